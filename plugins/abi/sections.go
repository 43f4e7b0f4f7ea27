package abi

// Sections name the parts of an Input that are maps or lists: what costs
// a guest most to decode (in a standard-Go guest a small map costs about
// 2 µs to build, as much as a shipped policy's own work). A plugin that
// reads only some of them says which (plugins/sdk Reads), and its decoder
// builds only those (InputDecoder.DecodeCompactSections); the others are
// nil, as when the host has none to send.
type Sections uint32

// The sections of an Input.
const (
	SectionEventData   Sections = 1 << iota // Event.Data
	SectionActions                          // Event.Actions
	SectionSettings                         // Workspace.Settings
	SectionPreferences                      // User.Preferences
	SectionDevices                          // User.Devices
	SectionRecent                           // User.Recent
	SectionPrior                            // Prior

	// AllSections is every section: what a plugin reads unless it says
	// otherwise.
	AllSections Sections = 1<<iota - 1
)

// ExportInputSections is the optional export (ptr i32, len i32) -> i32:
// given a config (the manifest's config {} block as JSON at [ptr, ptr+len),
// len 0 when there is none, in the relay_alloc buffer), it returns the
// Sections the plugin reads with that config. The host may then send the
// other sections empty (nil), sparing both sides encoding and walking
// them. Unknown bits are ignored; a section the plugin does not name (one
// a newer host adds, too) may be left out. Without the export, or if the
// call fails, the host sends everything.
const ExportInputSections = "relay_input_sections"

// Section indexes, in the order the compact input carries them.
const (
	sectionEventData = iota
	sectionActions
	sectionSettings
	sectionPreferences
	sectionDevices
	sectionRecent
	sectionPrior
	numSections
)

// Only returns a copy of in without the sections outside s (nil), as a
// plugin that reads only s sees it: unit-test a policy with in.Only(its
// sections) to check that it reads nothing else. The sections kept are
// shared with in, not copied.
func (in Input) Only(s Sections) Input {
	if s&SectionEventData == 0 {
		in.Event.Data = nil
	}
	if s&SectionActions == 0 {
		in.Event.Actions = nil
	}
	if s&SectionSettings == 0 {
		in.Workspace.Settings = nil
	}
	if s&SectionPreferences == 0 {
		in.User.Preferences = nil
	}
	if s&SectionDevices == 0 {
		in.User.Devices = nil
	}
	if s&SectionRecent == 0 {
		in.User.Recent = nil
	}
	if s&SectionPrior == 0 {
		in.Prior = nil
	}
	return in
}

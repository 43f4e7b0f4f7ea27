package otpredaction

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Reason is the reason the policy gives when it rewrites a notification.
const Reason = "otp_redacted"

// Mask replaces a code in visible text.
const Mask = "••••"

// DefaultBody is the body template when the config has none.
const DefaultBody = "Tap to view your code for {account}"

// accountField is replaced in the body by the (redacted) account name.
const accountField = "{account}"

// Config is the policy's configuration.
type Config struct {
	Body string `json:"body"`

	// parts is Body split at "{account}" (ParseConfig): Evaluate joins
	// them around the account with one allocation.
	parts []string
}

// ParseConfig decodes and validates the plugin config. Unknown fields are
// errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{Body: DefaultBody}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode otp_redaction config: %w", err)
		}
	}
	if strings.TrimSpace(c.Body) == "" || len(c.Body) > 1024 || !utf8.ValidString(c.Body) {
		return nil, fmt.Errorf("otp_redaction config: body: must be 1 to 1024 bytes of UTF-8")
	}
	if Redact(c.Body, "") != c.Body {
		return nil, fmt.Errorf("otp_redaction config: body: must not contain anything that looks like a code (4 or more digits, or letters mixed with digits)")
	}
	c.parts = strings.Split(c.Body, accountField)
	return c, nil
}

// Reads are the input sections Evaluate reads (event.data): the
// module asks for only these (sdk.Reads), which saves the guest building
// the others on every call.
const Reads = abi.SectionEventData

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	if in.Event.Type != "otp_received" {
		return abi.Allow()
	}
	code := in.Event.Data["code"]
	account := clip(Redact(strings.TrimSpace(in.Event.Data["account"]), code), 64)
	if account == "" {
		account = "your account"
	}
	// One allocation for the Set and the strings it points to (in a guest
	// each allocation counts).
	set := &struct {
		abi.Set
		body, title string
	}{body: c.body(account)}
	set.Body = &set.body
	if t := Redact(in.Event.Title, code); t != in.Event.Title {
		set.title = clip(t, abi.MaxTitleLen)
		set.Title = &set.title
	}
	out := abi.Allow()
	out.Reason = Reason
	out.Set = &set.Set
	return out
}

// body returns the body template with account in place of {account}.
func (c *Config) body(account string) string {
	if c.parts == nil { // a Config not made by ParseConfig
		return strings.ReplaceAll(c.Body, accountField, account)
	}
	if len(c.parts) == 2 { // the usual template: one allocation
		return c.parts[0] + account + c.parts[1]
	}
	return strings.Join(c.parts, account)
}

// Redact masks in s the code (the event's data "code", however s spells
// it: any case, any separators, any Unicode decimal digits) and everything
// that looks like a code: every run of 4 or more digits, where digit groups
// joined by up to 3 spaces or punctuation marks ("123.456", "123 - 456",
// "１２３ ４５６") count as one run, and every word mixing letters and at
// least 2 digits ("AB12CD"). Digits are any Unicode decimal digits.
func Redact(s, code string) string {
	if asciiNoDigit(s) && (code == "" || hasASCIIDigit(code)) {
		// Everything masked needs a digit (the code has one, and so does
		// anything that looks like a code), and s has none: the common
		// account name costs one pass over its bytes.
		return s
	}
	var wantBuf [32]byte
	if want, ok := asciiWant(wantBuf[:0], s, code); ok {
		return redactASCII(s, want)
	}
	return redactUnicode(s, code)
}

// asciiWant returns the letters (lower case) and digits of code, and
// whether redactASCII can judge s with them: s and code all ASCII, and the
// code long enough to be looked for letter by letter (3 or more).
func asciiWant(want []byte, s, code string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return nil, false
		}
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c >= 0x80 {
			return nil, false
		}
		if asciiKind[c] != 0 {
			want = append(want, asciiFold[c])
		}
	}
	return want, len(want) >= 3
}

// redactASCII is Redact for ASCII text (the usual title), with want the
// code's letters and digits (3 or more). It gives what redactUnicode does
// (FuzzRedactASCII) with fewer passes and no intermediate string (in a
// guest each costs): the code's spans count as the separators the mask's
// four bullets would be, instead of being masked first.
func redactASCII(s string, want []byte) string {
	var spanBuf [8][2]int
	spans := spanBuf[:0]
	// Where s spells the code, skipping what is neither letter nor digit.
	for i := 0; i < len(s); {
		if c := s[i]; asciiKind[c] == 0 || asciiFold[c] != want[0] {
			i++
			continue
		}
		j, k := i+1, 1
		for k < len(want) && j < len(s) {
			c := s[j]
			if asciiKind[c] == 0 {
				j++
				continue
			}
			if asciiFold[c] != want[k] {
				break
			}
			j++
			k++
		}
		if k == len(want) {
			spans = append(spans, [2]int{i, j})
			i = j
			continue
		}
		i++
	}
	codeSpans := len(spans)
	// The tokens (runs of letters and digits) outside the code's spans,
	// judged as they end: runs of digit groups joined by up to 3
	// separators with 4 or more digits, and words mixing letters and
	// digits.
	next, gap := 0, 0 // the next code span; separators since the last token
	run, runEnd, runDigits := -1, 0, 0
	for i := 0; i < len(s); {
		if next < codeSpans && i == spans[next][0] {
			i = spans[next][1]
			next++
			gap += len(Mask) / len("•") // the mask's bullets would separate
			continue
		}
		if asciiKind[s[i]] == 0 {
			i++
			gap++
			continue
		}
		end := len(s)
		if next < codeSpans {
			end = spans[next][0]
		}
		start, digits := i, 0
		for ; i < end && asciiKind[s[i]] != 0; i++ {
			if asciiKind[s[i]] == 'd' {
				digits++
			}
		}
		letters := i - start - digits
		switch {
		case letters == 0 && run >= 0 && gap <= 3:
			runEnd, runDigits = i, runDigits+digits
		case letters == 0:
			if runDigits >= 4 {
				spans = append(spans, [2]int{run, runEnd})
			}
			run, runEnd, runDigits = start, i, digits
		default:
			if runDigits >= 4 {
				spans = append(spans, [2]int{run, runEnd})
			}
			run, runDigits = -1, 0
			if digits >= 2 && (i-start <= 16 || digits >= 4) {
				spans = append(spans, [2]int{start, i})
			}
		}
		gap = 0
	}
	if runDigits >= 4 {
		spans = append(spans, [2]int{run, runEnd})
	}
	return mask(s, spans)
}

// redactUnicode is Redact for any text.
func redactUnicode(s, code string) string {
	// Fixed-size backing arrays keep a typical title off the heap (in a
	// guest every allocation counts).
	var tokBuf [32]token
	var spanBuf [8][2]int
	var wantBuf [32]rune
	// The code first: masking it can split a word, and what is left is
	// then judged like any other text.
	s = mask(s, appendCodeSpans(spanBuf[:0], s, code, wantBuf[:0]))
	toks := tokens(tokBuf[:0], s)
	spans := appendNumberSpans(spanBuf[:0], toks)
	for _, t := range toks {
		if t.letters > 0 && t.digits >= 2 && (t.runes <= 16 || t.digits >= 4) {
			spans = append(spans, [2]int{t.start, t.end})
		}
	}
	return mask(s, spans)
}

// asciiNoDigit reports whether s is all ASCII without a digit (other
// scripts' digits are judged by the full path).
func asciiNoDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || (c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func hasASCIIDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			return true
		}
	}
	return false
}

// mask replaces the byte ranges spans of s (in any order, possibly
// overlapping) with Mask.
func mask(s string, spans [][2]int) string {
	if len(spans) == 0 {
		return s
	}
	if len(spans) > 1 {
		slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	last := 0
	for i := 0; i < len(spans); {
		start, end := spans[i][0], spans[i][1]
		for i++; i < len(spans) && spans[i][0] < end; i++ {
			end = max(end, spans[i][1])
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// token is a maximal run of letters, marks and digits.
type token struct {
	start, end      int // bytes
	runes           int
	digits, letters int
	gap             int // separator runes before it (since the previous token)
}

// kind classifies a rune: 'd' digit, 'l' letter, 'm' combining mark, 0
// anything else. ASCII is a table lookup the compiler inlines (in a guest
// a call costs more than the lookup); the rest needs the Unicode tables.
func kind(r rune) byte {
	if r < 0x80 {
		return asciiKind[r]
	}
	return kindUnicode(r)
}

var asciiKind = func() (t [0x80]byte) {
	for r := range t {
		switch {
		case r >= '0' && r <= '9':
			t[r] = 'd'
		case (r|0x20) >= 'a' && (r|0x20) <= 'z':
			t[r] = 'l'
		}
	}
	return t
}()

func kindUnicode(r rune) byte {
	switch {
	case r >= 0x2000 && r <= 0x206f:
		return 0 // general punctuation, such as the mask's bullets
	case unicode.IsDigit(r):
		return 'd'
	case unicode.IsLetter(r):
		return 'l'
	case r >= 0x300 && unicode.IsMark(r):
		return 'm'
	}
	return 0
}

func tokens(out []token, s string) []token {
	cur := token{start: -1}
	gap := 0
	for i, r := range s {
		k := kind(r)
		if k == 0 {
			if cur.start >= 0 {
				cur.end = i
				out = append(out, cur)
				cur = token{start: -1}
			}
			gap++
			continue
		}
		if cur.start < 0 {
			cur = token{start: i, gap: gap}
			gap = 0
		}
		cur.runes++
		switch k {
		case 'd':
			cur.digits++
		case 'l':
			cur.letters++
		}
	}
	if cur.start >= 0 {
		cur.end = len(s)
		out = append(out, cur)
	}
	return out
}

// appendNumberSpans adds the runs of digit groups (joined by at most 3
// separator runes) with 4 or more digits in all.
func appendNumberSpans(spans [][2]int, toks []token) [][2]int {
	for i := 0; i < len(toks); {
		t := toks[i]
		if t.letters > 0 || t.digits == 0 {
			i++
			continue
		}
		j, digits := i+1, t.digits
		for j < len(toks) && toks[j].letters == 0 && toks[j].digits > 0 && toks[j].gap <= 3 {
			digits += toks[j].digits
			j++
		}
		if digits >= 4 {
			spans = append(spans, [2]int{t.start, toks[j-1].end})
		}
		i = j
	}
	return spans
}

// appendCodeSpans adds where s spells code, comparing only letters (case
// folded) and digits (by value) and skipping everything else.
func appendCodeSpans(spans [][2]int, s, code string, want []rune) [][2]int {
	for _, r := range code {
		if k := kind(r); k == 'd' || k == 'l' {
			want = append(want, fold(r))
		}
	}
	if len(want) < 3 {
		if code = strings.TrimSpace(code); code != "" && utf8.ValidString(code) {
			for off := 0; ; {
				i := indexFold(s[off:], code)
				if i < 0 {
					break
				}
				spans = append(spans, [2]int{off + i, off + i + len(code)})
				off += i + len(code)
			}
		}
		return spans
	}
	// Try a match at every letter or digit; skip what is neither.
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if k := kind(r); (k != 'd' && k != 'l') || fold(r) != want[0] {
			i += n
			continue
		}
		j, k := i+n, 1
		for k < len(want) && j < len(s) {
			r2, n2 := utf8.DecodeRuneInString(s[j:])
			switch kd := kind(r2); {
			case kd != 'd' && kd != 'l':
				j += n2
				continue
			case fold(r2) != want[k]:
			default:
				j += n2
				k++
				continue
			}
			break
		}
		if k == len(want) {
			spans = append(spans, [2]int{i, j})
			i = j
			continue
		}
		i += n
	}
	return spans
}

// fold maps a digit of any script to its ASCII digit and a letter to lower
// case. ASCII is inlined, as in kind.
func fold(r rune) rune {
	if r < 0x80 {
		return rune(asciiFold[r])
	}
	return foldUnicode(r)
}

var asciiFold = func() (t [0x80]byte) {
	for r := range t {
		t[r] = byte(r)
		if r >= 'A' && r <= 'Z' {
			t[r] = byte(r + 'a' - 'A')
		}
	}
	return t
}()

func foldUnicode(r rune) rune {
	if unicode.IsDigit(r) {
		for _, rg := range unicode.Nd.R16 {
			if lo, hi := rune(rg.Lo), rune(rg.Hi); r >= lo && r <= hi {
				return '0' + (r-lo)%10
			}
		}
		for _, rg := range unicode.Nd.R32 {
			if lo, hi := rune(rg.Lo), rune(rg.Hi); r >= lo && r <= hi {
				return '0' + (r-lo)%10
			}
		}
	}
	return unicode.ToLower(r)
}

// indexFold is a case-insensitive strings.Index for short codes, matching
// only whole runes.
func indexFold(s, sub string) int {
	for i := range s {
		j := i + len(sub)
		if j > len(s) {
			break
		}
		if (j == len(s) || utf8.RuneStart(s[j])) && strings.EqualFold(s[i:j], sub) {
			return i
		}
	}
	return -1
}

// clip shortens s to at most n bytes without splitting a rune.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

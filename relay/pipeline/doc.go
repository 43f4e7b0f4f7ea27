// Package pipeline turns accepted events into delivery jobs.
//
// Accept fills an event's defaults from its notification type (expiry,
// priority, actions), stores it durably, and hands it to the deciders. A
// decider applies the baseline (workspace setting × user preference), then the
// policy plugins, renders the alert, records the decision and one job per
// target device in the store, and only then gives the jobs to the queue. An
// event stored but not yet decided when the process stops is decided after the
// restart (Recover), so nothing accepted is lost.
package pipeline

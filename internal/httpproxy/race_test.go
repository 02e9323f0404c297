//go:build race

package httpproxy

// raceEnabled: the race detector is on; it inflates every allocation, so
// memory bounds are not checked.
const raceEnabled = true

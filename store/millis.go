package store

import "time"

// FloorMillis is t in Unix milliseconds rounded down (an audit id's
// millisecond is its time's, rounded down).
func FloorMillis(t time.Time) int64 {
	ms := t.UnixMilli() // truncates toward zero
	if time.UnixMilli(ms).After(t) {
		ms--
	}
	return ms
}

// CeilMillis is t in Unix milliseconds rounded up.
func CeilMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

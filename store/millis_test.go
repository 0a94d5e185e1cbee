package store

import (
	"testing"
	"time"
)

func TestFloorCeilMillis(t *testing.T) {
	for _, tc := range []struct {
		t           time.Time
		floor, ceil int64
	}{
		{time.UnixMilli(1500), 1500, 1500},
		{time.Unix(1, 500_000_001), 1500, 1501},
		{time.Unix(-1, 500_000_001), -500, -499}, // before 1970: UnixMilli truncates toward zero
		{time.Unix(-2, 999_999_999), -1001, -1000},
	} {
		if got := FloorMillis(tc.t); got != tc.floor {
			t.Errorf("FloorMillis(%v) = %d, want %d", tc.t, got, tc.floor)
		}
		if got := CeilMillis(tc.t); got != tc.ceil {
			t.Errorf("CeilMillis(%v) = %d, want %d", tc.t, got, tc.ceil)
		}
	}
}

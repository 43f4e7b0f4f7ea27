package queue

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name    string
		b       Backoff
		attempt int
		floor   time.Duration
		want    time.Duration
	}{
		{"first retry no jitter", Backoff{Initial: time.Second, Max: time.Minute}, 1, 0, time.Second},
		{"doubles", Backoff{Initial: time.Second, Max: time.Minute}, 4, 0, 8 * time.Second},
		{"capped", Backoff{Initial: time.Second, Max: 5 * time.Second}, 10, 0, 5 * time.Second},
		{"huge attempt stays capped", Backoff{Initial: time.Second, Max: 5 * time.Minute}, 1000, 0, 5 * time.Minute},
		{"floor wins", Backoff{Initial: time.Second, Max: time.Minute}, 1, 30 * time.Second, 30 * time.Second},
		{"full jitter at rand=1 gives ~0", Backoff{Initial: time.Second, Max: time.Minute, Jitter: 1, Rand: func() float64 { return 1 }}, 1, 0, 0},
		{"jitter 0.2 at rand=1 gives 0.8d", Backoff{Initial: 10 * time.Second, Max: time.Minute, Jitter: 0.2, Rand: func() float64 { return 1 }}, 1, 0, 8 * time.Second},
		{"jitter at rand=0 gives d", Backoff{Initial: 10 * time.Second, Max: time.Minute, Jitter: 0.2, Rand: func() float64 { return 0 }}, 1, 0, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Delay(tc.attempt, tc.floor); got != tc.want {
				t.Fatalf("Delay(%d, %v) = %v, want %v", tc.attempt, tc.floor, got, tc.want)
			}
		})
	}
}

func TestBackoffJitterRange(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.2}
	for i := 0; i < 1000; i++ {
		d := b.Delay(3, 0)
		if d < 3200*time.Millisecond || d > 4*time.Second {
			t.Fatalf("Delay(3) = %v, want within [3.2s, 4s]", d)
		}
	}
}

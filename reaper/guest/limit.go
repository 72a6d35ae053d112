package guest

import (
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// limiter is a set of token buckets, one per key, refilled at rate per
// second up to burst. Buckets idle long enough to be full again are dropped.
type limiter struct {
	clock clock.Clock
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(clk clock.Clock, rate float64, burst int) *limiter {
	return &limiter{clock: clk, rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket. When the bucket is empty it
// returns false and how long until a token is back.
func (l *limiter) allow(key string) (time.Duration, bool) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.sweep) > full {
		for k, b := range l.buckets {
			if now.Sub(b.last) >= full {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

package main

import (
	"context"
	"sync"
	"time"
)

// outcome is the result of one job of a pool.
type outcome struct {
	sb  sandbox
	dur time.Duration // from the job's start to its end
	err error
}

// runPool runs job(ctx, i) for every i in [0, n) on the given number of
// workers and returns the outcomes in index order and the wall time from the
// first job's start to the last job's end.
func runPool(ctx context.Context, n, workers int, job func(ctx context.Context, i int) (sandbox, error)) ([]outcome, time.Duration) {
	out := make([]outcome, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(workers, n) {
		wg.Go(func() {
			for i := range jobs {
				t := time.Now()
				sb, err := job(ctx, i)
				out[i] = outcome{sb: sb, dur: time.Since(t), err: err}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out, time.Since(start)
}

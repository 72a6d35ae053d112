package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeAdvanceAndSet(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := NewFake(start)
	if got := f.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v; want %v", got, start)
	}
	f.Advance(90 * time.Second)
	if got, want := f.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance, Now() = %v; want %v", got, want)
	}
	later := start.Add(24 * time.Hour)
	f.Set(later)
	if got := f.Now(); !got.Equal(later) {
		t.Fatalf("after Set, Now() = %v; want %v", got, later)
	}
}

func TestRealIsNow(t *testing.T) {
	before := time.Now()
	got := Real{}.Now()
	if got.Before(before) {
		t.Fatalf("Real{}.Now() = %v is before %v", got, before)
	}
}

func TestFakeTimers(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(time.Second)
	b := f.NewTimer(3 * time.Second)
	c := f.NewTimer(2 * time.Second)
	now := f.NewTimer(0)
	select {
	case got := <-now.C:
		if !got.Equal(start) {
			t.Errorf("zero timer fired with %v; want %v", got, start)
		}
	default:
		t.Errorf("a timer of 0 has not fired at once")
	}
	if got := f.Pending(); got != 3 {
		t.Fatalf("Pending() = %d; want 3", got)
	}
	if !c.Stop() || c.Stop() {
		t.Errorf("Stop of a pending timer twice: want true then false")
	}
	f.Advance(999 * time.Millisecond)
	fired := func(tm *Timer) bool {
		select {
		case <-tm.C:
			return true
		default:
			return false
		}
	}
	if fired(a) || fired(b) {
		t.Fatalf("a timer fired before its time")
	}
	f.Advance(time.Millisecond)
	if !fired(a) || fired(b) || fired(c) {
		t.Fatalf("after 1s: want only the 1s timer fired")
	}
	if a.Stop() {
		t.Errorf("Stop of a fired timer = true; want false")
	}
	f.Set(start.Add(time.Hour))
	if !fired(b) || fired(c) || f.Pending() != 0 {
		t.Fatalf("after Set past all: want the 3s timer fired, the stopped one not, none pending (%d)", f.Pending())
	}
}

func TestFakeBlockUntil(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		tm := f.NewTimer(time.Minute)
		<-tm.C
	}()
	if err := f.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	long := f.NewTimer(time.Hour)
	defer long.Stop()
	if err := f.BlockUntilDue(context.Background(), 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	<-done
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := f.BlockUntilDue(short, 1, time.Minute); err == nil {
		t.Errorf("BlockUntilDue counted a timer due in an hour as due within a minute")
	}
	if err := f.BlockUntilDue(context.Background(), 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.BlockUntil(ctx, 2); err == nil {
		t.Errorf("BlockUntil(2) with one timer pending and a cancelled context = nil; want its error")
	}
}

func TestRealTimer(t *testing.T) {
	tm := Real{}.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Errorf("Stop of a pending real timer = false; want true")
	}
	<-Real{}.NewTimer(0).C
}

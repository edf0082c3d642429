// Goroutines that talk over channels and sleep: a pipeline of three stages and a ticker. The output is the same
// under every correct schedule.
package main

import (
	"fmt"
	"time"
)

func main() {
	numbers := make(chan int)
	squares := make(chan int)
	go func() {
		for i := 1; i <= 10; i++ {
			numbers <- i
		}
		close(numbers)
	}()
	go func() {
		for n := range numbers {
			time.Sleep(time.Millisecond)
			squares <- n * n
		}
		close(squares)
	}()
	sum := 0
	for s := range squares {
		sum += s
	}
	fmt.Println("sum of squares 1..10:", sum)

	start := time.Now()
	time.Sleep(50 * time.Millisecond)
	fmt.Println("slept at least 50ms:", time.Since(start) >= 50*time.Millisecond)

	ticker := time.NewTicker(5 * time.Millisecond)
	ticks := 0
	for range ticker.C {
		ticks++
		if ticks == 3 {
			break
		}
	}
	ticker.Stop()
	fmt.Println("ticks:", ticks)

	done := make(chan string)
	select {
	case v := <-done:
		fmt.Println("unexpected", v)
	case <-time.After(10 * time.Millisecond):
		fmt.Println("select timed out")
	}
}

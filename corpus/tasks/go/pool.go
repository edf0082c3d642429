// A worker pool on GOMAXPROCS=4: jobs over a channel, results gathered with a WaitGroup and a mutex, CPU-bound
// work in every worker. The output is the same under every correct schedule.
package main

import (
	"fmt"
	"runtime"
	"sync"
)

func work(n int) uint64 {
	x := uint64(n)
	for i := 0; i < 20000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x >> 33
}

func main() {
	runtime.GOMAXPROCS(4)
	jobs := make(chan int, 16)
	var mu sync.Mutex
	var wg sync.WaitGroup
	results := make(map[int]uint64)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				r := work(j)
				mu.Lock()
				results[j] = r
				mu.Unlock()
			}
		}()
	}
	for j := 0; j < 200; j++ {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	var total uint64
	for j := 0; j < 200; j++ {
		total ^= results[j] * uint64(j+1)
	}
	fmt.Println("GOMAXPROCS", runtime.GOMAXPROCS(0), "jobs", len(results), "checksum", total)
}

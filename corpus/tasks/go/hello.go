// The smallest Go program: the runtime alone starts several threads (sysmon, the garbage collector's workers).
package main

import "fmt"

func main() {
	fmt.Println("hello from Go")
}

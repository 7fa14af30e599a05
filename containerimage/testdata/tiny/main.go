// Command tiny stands in for dogear in the image builder's tests: a small static Go binary.
package main

import "fmt"

func main() { fmt.Println("tiny") }

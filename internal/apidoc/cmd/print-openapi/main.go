// Command print-openapi writes the OpenAPI document that Herald serves at
// GET /v1/openapi.json to standard output: make lint lints it.
package main

import (
	"fmt"
	"os"

	"github.com/heraldhq/herald/internal/apidoc"
)

func main() {
	doc, err := apidoc.Document()
	if err == nil {
		_, err = os.Stdout.Write(doc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "print-openapi:", err)
		os.Exit(1)
	}
}

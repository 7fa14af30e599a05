// Package httpjson writes dogear's JSON responses and error bodies, so that every endpoint
// answers in the same shape.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Error is the body of every refused request: what was wrong and, where it applies, where.
type Error struct {
	Error  string `json:"error"`
	Field  string `json:"field,omitempty"`
	Line   int    `json:"line,omitempty"`
	Offset *int64 `json:"offset,omitempty"`
}

// Write sends v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Fail sends an Error body with the status and returns the status, for handlers that count them.
func Fail(w http.ResponseWriter, status int, e Error) int {
	Write(w, status, e)
	return status
}

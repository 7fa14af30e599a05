package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Client posts NDJSON batches to POST /v1/events the way a well-behaved source does: with its
// write key, and resending a batch when the server says to (429, 503 and Retry-After). Resending
// is safe because events are deduplicated by id.
type Client struct {
	URL  string
	Key  string // write key; empty in local-only mode
	Gzip bool   // the body is gzip-compressed
	HTTP *http.Client
	// MaxRetries bounds resends after 429/503 (default 20).
	MaxRetries int
}

// Send posts one body and returns the server's answer. A batch with refused events is an error:
// senders build valid events.
func (c *Client) Send(ctx context.Context, body []byte) (*Response, error) {
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	retries := c.MaxRetries
	if retries == 0 {
		retries = 20
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if c.Gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
		if c.Key != "" {
			req.Header.Set("Authorization", "Bearer "+c.Key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("posting to %s: %w", c.URL, err)
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			var r Response
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("posting to %s: unreadable answer: %w", c.URL, err)
			}
			if len(r.Refused) > 0 {
				return &r, fmt.Errorf("server refused %d events, first: %+v", len(r.Refused), r.Refused[0])
			}
			return &r, nil
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < retries:
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			select {
			case <-time.After(time.Duration(max(wait, 1)) * time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		default:
			return nil, fmt.Errorf("posting to %s: status %d: %.300s", c.URL, resp.StatusCode, raw)
		}
	}
}

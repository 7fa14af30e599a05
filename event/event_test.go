package event

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestParseValidEveryType(t *testing.T) {
	cases := map[Type]string{
		Session:   `{"id":"e1","type":"session","reader":"r1","book":"b1","time":"2026-11-20T08:00:00+01:00","duration_ms":600000,"page_turns":12,"tz":"Europe/Berlin"}`,
		Page:      `{"id":"e2","type":"page","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","page":10,"pages":300,"duration_ms":40000}`,
		Progress:  `{"id":"e3","type":"progress","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","position":0}`,
		Highlight: `{"id":"e4","type":"highlight","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","text":"Call me Ishmael.","position":0.01}`,
		Bookmark:  `{"id":"e5","type":"bookmark","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","page":3}`,
		Finish:    `{"id":"e6","type":"finish","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`,
		Rating:    `{"id":"e7","type":"rating","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","rating":5}`,
		Shelve:    `{"id":"e8","type":"shelve","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`,
		Purchase:  `{"id":"e9","type":"purchase","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`,
		Sample:    `{"id":"e10","type":"sample","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`,
	}
	for typ, raw := range cases {
		e, err := Parse([]byte(raw), now)
		if err != nil {
			t.Errorf("%s: refused: %v", typ, err)
			continue
		}
		if e.Type != typ || e.Reader != "r1" || e.Book != "b1" {
			t.Errorf("%s: got %+v", typ, e)
		}
		if e.Time.Location() != time.UTC {
			t.Errorf("%s: time not normalized to UTC: %v", typ, e.Time)
		}
	}
	e, _ := Parse([]byte(cases[Session]), now)
	if e.Time.Hour() != 7 || e.DurationMS != 600000 || e.PageTurns != 12 || e.TZ != "Europe/Berlin" {
		t.Errorf("session fields: %+v", e)
	}
	e, _ = Parse([]byte(cases[Progress]), now)
	if e.Position == nil || *e.Position != 0 {
		t.Errorf("position 0 must be kept as present, got %v", e.Position)
	}
}

func TestParseRefusals(t *testing.T) {
	base := `"id":"e1","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"`
	cases := []struct {
		name, raw, field, code, reason string
	}{
		{"not an object", `[1,2]`, "", CodeWrongType, "must be a JSON object"},
		{"null", `null`, "", CodeWrongType, "JSON object"},
		{"malformed", `{"id":"e1",`, "", CodeMalformed, "malformed JSON"},
		{"missing id", `{"type":"finish","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`, "id", CodeMissing, "required"},
		{"missing type", `{` + base + `}`, "type", CodeMissing, "required"},
		{"unknown type", `{` + base + `,"type":"dance"}`, "type", CodeUnknownType, `unknown type "dance"`},
		{"missing book", `{"id":"e1","type":"finish","reader":"r1","time":"2026-11-20T08:00:00Z"}`, "book", CodeMissing, "required"},
		{"missing reader", `{"id":"e1","type":"finish","book":"b1","time":"2026-11-20T08:00:00Z"}`, "reader", CodeMissing, "required"},
		{"missing time", `{"id":"e1","type":"finish","reader":"r1","book":"b1"}`, "time", CodeMissing, "required"},
		{"bad time", `{"id":"e1","type":"finish","reader":"r1","book":"b1","time":"yesterday"}`, "time", CodeInvalid, "RFC 3339"},
		{"time no zone", `{"id":"e1","type":"finish","reader":"r1","book":"b1","time":"2026-11-20T08:00:00"}`, "time", CodeInvalid, "RFC 3339"},
		{"future", `{"id":"e1","type":"finish","reader":"r1","book":"b1","time":"2027-11-20T08:00:00Z"}`, "time", CodeInvalid, "future"},
		{"ancient", `{"id":"e1","type":"finish","reader":"r1","book":"b1","time":"1970-01-01T00:00:00Z"}`, "time", CodeInvalid, "clock"},
		{"rating wrong type", `{` + base + `,"type":"rating","rating":"five"}`, "rating", CodeWrongType, "must be a JSON integer, got a string"},
		{"rating range", `{` + base + `,"type":"rating","rating":7}`, "rating", CodeInvalid, "from 1 to 5, got 7"},
		{"rating missing", `{` + base + `,"type":"rating"}`, "rating", CodeMissing, "rating"},
		{"position range", `{` + base + `,"type":"progress","position":1.5}`, "position", CodeInvalid, "0 to 1"},
		{"position missing", `{` + base + `,"type":"progress"}`, "position", CodeMissing, "position"},
		{"session no duration", `{` + base + `,"type":"session"}`, "duration_ms", CodeMissing, "duration_ms"},
		{"negative duration", `{` + base + `,"type":"session","duration_ms":-5}`, "duration_ms", CodeInvalid, "got -5"},
		{"fractional page", `{` + base + `,"type":"page","page":1.5}`, "page", CodeWrongType, "integer"},
		{"page beyond pages", `{` + base + `,"type":"page","page":500,"pages":300}`, "page", CodeInvalid, "beyond"},
		{"huge highlight", `{` + base + `,"type":"highlight","text":"` + strings.Repeat("a", MaxTextBytes+1) + `"}`, "text", CodeTooLarge, "4097 bytes"},
		{"long id", `{"id":"` + strings.Repeat("x", 200) + `","type":"finish","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`, "id", CodeTooLarge, "200 bytes"},
		{"slash in reader", `{"id":"e1","type":"finish","reader":"a/b","book":"b1","time":"2026-11-20T08:00:00Z"}`, "reader", CodeInvalid, "'/'"},
		{"bad tz", `{` + base + `,"type":"finish","tz":"Mars/Olympus"}`, "tz", CodeInvalid, "Mars/Olympus"},
		{"invalid utf8", "{" + base + ",\"type\":\"highlight\",\"text\":\"ab\xff\"}", "text", CodeUTF8, "invalid UTF-8 at byte"},
		{"too many props", `{` + base + `,"type":"finish"` + manyProps(MaxProps+1) + `}`, "props", CodeTooLarge, "at most 32"},
		{"big prop", `{` + base + `,"type":"finish","blob":"` + strings.Repeat("z", MaxPropBytes) + `"}`, "blob", CodeTooLarge, "extra field"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.raw), now)
		if err == nil {
			t.Errorf("%s: accepted, want refusal", c.name)
			continue
		}
		if err.Field != c.field || err.Code != c.code || !strings.Contains(err.Reason, c.reason) {
			t.Errorf("%s: got field=%q code=%q reason=%q; want field=%q code=%q reason containing %q",
				c.name, err.Field, err.Code, err.Reason, c.field, c.code, c.reason)
		}
	}
}

func manyProps(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(`,"p`)
		b.WriteString(strings.Repeat("x", i%3))
		b.WriteByte(byte('a' + i%26))
		b.WriteString(string(rune('A' + i/26)))
		b.WriteString(`":1`)
	}
	return b.String()
}

func TestUnknownFieldsKeptInProps(t *testing.T) {
	raw := `{"id":"e1","type":"finish","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","app_version":"3.2","props":{"store":"de"}}`
	e, err := Parse([]byte(raw), now)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Props["app_version"]) != `"3.2"` || string(e.Props["store"]) != `"de"` {
		t.Fatalf("props = %v", e.Props)
	}
	back, uerr := Decode(e.Encode())
	if uerr != nil || string(back.Props["app_version"]) != `"3.2"` || !back.Time.Equal(e.Time) {
		t.Fatalf("round trip: %+v %v", back, uerr)
	}
}

func TestSplit(t *testing.T) {
	items, err := Split(context.Background(), []byte("\ufeff{\"a\":1}\n\n  {\"b\":2}\r\n{broken\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || items[0].Line != 1 || items[1].Line != 3 || items[2].Line != 4 || string(items[2].Raw) != "{broken" {
		t.Fatalf("ndjson: %+v", items)
	}
	items, err = Split(context.Background(), []byte("[\n {\"a\":1},\n {\"b\":2}\n]"), 0)
	if err != nil || len(items) != 2 || items[1].Line != 3 || string(items[1].Raw) != `{"b":2}` {
		t.Fatalf("array: %+v %v", items, err)
	}
	items, err = Split(context.Background(), []byte("{\n  \"a\": 1\n}\n"), 0)
	if err != nil || len(items) != 1 {
		t.Fatalf("pretty single object: %+v %v", items, err)
	}
	_, err = Split(context.Background(), []byte("[{\"a\":1},\n{\"b\":"), 0)
	be, ok := err.(*BodyError)
	if !ok || be.Line != 2 || !strings.Contains(be.Reason, "truncated") {
		t.Fatalf("truncated array: %v", err)
	}
	_, err = Split(context.Background(), []byte(`[{"a":1}] x`), 0)
	if be, ok := err.(*BodyError); !ok || be.Offset != 10 {
		t.Fatalf("trailing data: %#v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"e1","type":"page","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z","page":10,"pages":300}`))
	f.Add([]byte(`{"id":"e1","type":"rating","rating":"x"}`))
	f.Add([]byte(`{"id":"e1","type":"progress","reader":"r","book":"b","time":"2026-11-20T08:00:00Z","position":1e400}`))
	f.Add([]byte("{\"text\":\"\xff\"}"))
	// A field the model does not have, malformed in a way a decoder that skips it may not see.
	f.Add([]byte(`{"id":"e1","x":[}],"type":"page","reader":"r1","book":"b1","time":"2026-11-20T08:00:00Z"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, ferr := Parse(raw, now)
		if ferr != nil {
			if ferr.Reason == "" || ferr.Code == "" {
				t.Fatalf("refusal without reason: %+v", ferr)
			}
			return
		}
		// Only valid JSON may be accepted, whatever decoder the fast path uses.
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		// An accepted event must survive its stored form unchanged.
		back, err := Decode(e.Encode())
		if len(e.Props) == 0 {
			e.Props = nil // the stored form does not tell an empty props object from none
		}
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("stored form does not round trip: %+v -> %+v (%v)", e, back, err)
		}
		if e.ID == "" || e.Reader == "" || e.Book == "" || !e.Type.known() {
			t.Fatalf("accepted an incomplete event: %+v", e)
		}
	})
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte(`[{"a":1},{"b":2}]`))
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"))
	f.Add([]byte(`[{"a":1},`))
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := Split(context.Background(), body, 0)
		if err != nil {
			be, ok := err.(*BodyError)
			if !ok || be.Offset < 0 || be.Offset > int64(len(body)) || be.Line < 1 {
				t.Fatalf("bad body error %#v", err)
			}
			return
		}
		for _, it := range items {
			if it.Line < 1 || len(it.Raw) == 0 {
				t.Fatalf("bad item %+v", it)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	raw := []byte(`{"id":"g1-12345","type":"page","reader":"reader-000042","book":"book-00017","time":"2026-11-20T08:00:00.123Z","device":"kindle-paperwhite","page":42,"pages":300,"duration_ms":61000,"session":"reader-000042-s7"}`)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Parse(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}

// Decoders resolve duplicate keys, case variants and lone surrogates silently (the last key wins,
// "Reader" overrides "reader", \ud800 becomes U+FFFD); each must be refused, naming the field.
func TestAmbiguousJSONRefused(t *testing.T) {
	base := `"id":"e1","type":"finish","book":"b1","time":"2026-11-20T08:00:00Z"`
	for name, c := range map[string]struct{ raw, field string }{
		"duplicate key":      {`{` + base + `,"reader":"alice","reader":"mallory"}`, "reader"},
		"case variant":       {`{` + base + `,"reader":"alice","Reader":"mallory"}`, "Reader"},
		"upper case variant": {`{` + base + `,"READER":"mallory"}`, "READER"},
		"escaped duplicate":  {`{` + base + `,"reader":"alice","re\u0061der":"mallory"}`, "reader"},
		"duplicate in props": {`{` + base + `,"reader":"a","props":{"x":1,"x":2}}`, "x"},
		"lone high half":     {`{` + base + `,"reader":"a\ud800"}`, "reader"},
		"lone low half":      {`{` + base + `,"reader":"a\udc00b"}`, "reader"},
		"high then no low":   {`{` + base + `,"reader":"\ud800\u0041"}`, "reader"},
	} {
		_, ferr := Parse([]byte(c.raw), now)
		if ferr == nil || ferr.Field != c.field || ferr.Code != CodeInvalid {
			t.Errorf("%s: got %+v, want a refusal of field %q", name, ferr, c.field)
		}
	}
	for name, raw := range map[string]string{
		"surrogate pair":          `{` + base + `,"reader":"\ud83d\udcd6"}`,
		"escaped backslash and u": `{` + base + `,"reader":"a\\ud800"}`,
		"same key, other objects": `{` + base + `,"reader":"a","props":{"reader":1}}`,
	} {
		if _, ferr := Parse([]byte(raw), now); ferr != nil {
			t.Errorf("%s: refused: %+v", name, ferr)
		}
	}
}

// The split is linear: a maximal array of events takes about as long as the same events as
// NDJSON (it took 100× longer when every element counted the lines before it), and a body with
// more events than allowed stops at the first one past the limit.
func TestSplitArrayLinearAndBounded(t *testing.T) {
	ev := `{"id":"e","type":"finish","reader":"r","book":"b","time":"2026-11-20T08:00:00Z"}`
	const n = 100_000
	array := []byte("[" + strings.Repeat(ev+",\n", n-1) + ev + "]")
	start := time.Now()
	items, err := Split(context.Background(), array, n)
	took := time.Since(start)
	if err != nil || len(items) != n || items[n-1].Line != n {
		t.Fatalf("array of %d: %d items, last %+v, %v", n, len(items), items[len(items)-1].Line, err)
	}
	if took > 5*time.Second {
		t.Fatalf("splitting %d array elements took %v", n, took)
	}
	_, err = Split(context.Background(), []byte("["+strings.Repeat("{},", 1_000_000)+"{}]"), n)
	var tooMany *TooManyError
	if !errors.As(err, &tooMany) || tooMany.Max != n || tooMany.Offset != 1+3*n {
		t.Fatalf("a million {}: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Split(ctx, array, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled split: %v", err)
	}
}

func TestBOMBeforeArray(t *testing.T) {
	items, err := Split(context.Background(), []byte("\ufeff[{\"a\":1},\n{\"b\":2}]"), 0)
	if err != nil || len(items) != 2 || items[1].Line != 2 {
		t.Fatalf("BOM before an array: %+v %v", items, err)
	}
	_, plain := Split(context.Background(), []byte("[{\"a\":1},\n{\"b\":]"), 0)
	_, err = Split(context.Background(), []byte("\ufeff[{\"a\":1},\n{\"b\":]"), 0)
	if be, ok := err.(*BodyError); !ok || be.Line != 2 || be.Offset != plain.(*BodyError).Offset+3 {
		t.Fatalf("offsets after a BOM count from the body's start: %#v", err)
	}
}

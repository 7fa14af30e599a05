package event

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
)

// checkShape refuses what JSON decoders silently resolve one way or another, so that what a
// client meant is never guessed: a key given twice in one object (decoders keep the last), a key
// that differs from a field of the model only in case ("Reader" would override "reader"), and a
// \u escape of half a surrogate pair (decoders turn it into U+FFFD, so two different ids would
// become one). It also reports whether the event has a top-level key that is no field of the
// model (such keys go to props), or a shape the walk cannot follow: the fast path of Parse
// leaves both to the slow one. raw was accepted by a JSON decoder; the walk is one linear pass.
func checkShape(raw []byte) (others bool, ferr *FieldError) {
	// The keys of the open objects, innermost last, and where each open container's keys start
	// (-1 for an array): small arrays on the stack, as an event has a few dozen keys at most.
	var keyBuf [48][]byte
	var startBuf [8]int
	keys, starts := keyBuf[:0], startBuf[:0]
	var known uint32                           // the model's fields seen at the top level, by fieldBit: most keys are these
	escapes := bytes.IndexByte(raw, '\\') >= 0 // most events have none, and their strings end at the next quote
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; len(starts) == 0 && (c == '}' || c == ']' || c == '"') {
			return true, nil // outside the object: the decoder skipped a malformed value
		}
		switch raw[i] {
		case '{':
			starts = append(starts, len(keys))
		case '[':
			starts = append(starts, -1)
		case '}', ']':
			if from := starts[len(starts)-1]; from >= 0 {
				keys = keys[:from]
			}
			starts = starts[:len(starts)-1]
		case '"':
			end, hasEscape := len(raw), false
			if escapes {
				end, hasEscape = stringEnd(raw, i)
			} else if q := bytes.IndexByte(raw[i+1:], '"'); q >= 0 {
				end = i + q + 2
			}
			if hasEscape {
				if off := loneSurrogate(raw[i:end]); off >= 0 {
					return false, fieldErr(fieldAt(raw, i+off), CodeInvalid, "half a UTF-16 surrogate pair (\\u escape) at byte %d: it cannot stand for a character", i+off)
				}
			}
			if from := starts[len(starts)-1]; from >= 0 && isKey(raw, end) {
				key := raw[i+1 : end-1]
				if hasEscape {
					var s string
					json.Unmarshal(raw[i:end], &s)
					key = []byte(s)
				}
				if bit := fieldBit(key); bit != 0 && len(starts) == 1 {
					if known&bit != 0 {
						return false, fieldErr(string(key), CodeInvalid, "given twice in one object")
					}
					known |= bit
				} else {
					for _, k := range keys[from:] {
						if bytes.Equal(k, key) {
							return false, fieldErr(string(key), CodeInvalid, "given twice in one object")
						}
					}
					if len(starts) == 1 {
						if name := caseVariant(key); name != "" {
							return false, fieldErr(string(key), CodeInvalid, "field names are lower case: did you mean %q?", name)
						}
						others = true
					}
					keys = append(keys, key)
				}
			}
			i = end - 1
		}
	}
	return others, nil
}

// fieldBit is a field of the model's bit in checkShape's set, 0 for any other key. A switch on
// the key compiles to a few comparisons, without a map lookup or an allocation.
func fieldBit(key []byte) uint32 {
	switch string(key) {
	case "id":
		return 1 << 0
	case "type":
		return 1 << 1
	case "reader":
		return 1 << 2
	case "book":
		return 1 << 3
	case "time":
		return 1 << 4
	case "device":
		return 1 << 5
	case "session":
		return 1 << 6
	case "position":
		return 1 << 7
	case "page":
		return 1 << 8
	case "pages":
		return 1 << 9
	case "duration_ms":
		return 1 << 10
	case "page_turns":
		return 1 << 11
	case "rating":
		return 1 << 12
	case "text":
		return 1 << 13
	case "tz":
		return 1 << 14
	case "props":
		return 1 << 15
	}
	return 0
}

// caseVariant returns the field of the model that key differs from only in case, or "".
func caseVariant(key []byte) string {
	folds := false // every field name is lower-case ASCII: only upper case or non-ASCII can fold to one
	for _, c := range key {
		folds = folds || c >= 0x80 || (c >= 'A' && c <= 'Z')
	}
	if !folds {
		return ""
	}
	for name := range knownFields {
		if strings.EqualFold(name, string(key)) {
			return name
		}
	}
	return ""
}

// stringEnd returns the offset just past the string that starts at raw[start] (a '"'), and
// whether it holds an escape.
func stringEnd(raw []byte, start int) (int, bool) {
	for j := start + 1; ; {
		k := bytes.IndexByte(raw[j:], '"')
		if k < 0 {
			return len(raw), true
		}
		q := j + k
		backslashes := 0
		for p := q - 1; p > start && raw[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 { // not itself escaped: the closing quote
			return q + 1, bytes.IndexByte(raw[start+1:q], '\\') >= 0
		}
		j = q + 1
	}
}

// isKey reports whether the string ending before raw[end] is an object key: a ':' follows it.
func isKey(raw []byte, end int) bool {
	for ; end < len(raw); end++ {
		switch raw[end] {
		case ' ', '\t', '\r', '\n':
			continue
		case ':':
			return true
		}
		return false
	}
	return false
}

// loneSurrogate returns the offset in s (a quoted JSON string) of a \u escape that is half a
// surrogate pair, or -1.
func loneSurrogate(s []byte) int {
	for j := 1; j < len(s)-1; j++ {
		if s[j] != '\\' {
			continue
		}
		if s[j+1] != 'u' || j+6 > len(s) {
			j++ // an escaped character, skipped whole so `\\u` is not read as an escape
			continue
		}
		r, err := strconv.ParseUint(string(s[j+2:j+6]), 16, 16)
		if err != nil || !utf16.IsSurrogate(rune(r)) {
			j += 5
			continue
		}
		if r >= 0xdc00 || j+12 > len(s) || s[j+6] != '\\' || s[j+7] != 'u' {
			return j
		}
		lo, err := strconv.ParseUint(string(s[j+8:j+12]), 16, 16)
		if err != nil || lo < 0xdc00 || lo > 0xdfff {
			return j
		}
		j += 11
	}
	return -1
}

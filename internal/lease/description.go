package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The metadata block is three lines in the VM's description: BeginMarker, the
// metadata as one line of JSON, EndMarker. The markers are HTML comments, so
// the web UI's Markdown view hides them; the JSON stays visible to operators.
const (
	BeginMarker = "<!-- agentlab:begin -->"
	EndMarker   = "<!-- agentlab:end -->"
)

// MaxDescriptionLen is the longest description PVE accepts (its API schema's
// maxLength for the description parameter).
const MaxDescriptionLen = 8192

var (
	// ErrNoBlock means the description has no metadata block at all.
	ErrNoBlock = errors.New("no agentlab metadata block in description")
	// ErrMalformed means a metadata block is present but cannot be trusted:
	// markers out of place, bad JSON, missing or inconsistent fields, or an
	// unsupported version.
	ErrMalformed = errors.New("malformed agentlab metadata block")
)

// NormalizeDescription returns description as PVE stores and returns it: the
// config file keeps it as comment lines and drops trailing whitespace.
func NormalizeDescription(description string) string {
	return strings.TrimRight(description, " \t\r\n\v\f")
}

// Encode returns description with its metadata block set to m: an existing
// block is replaced in place, otherwise the block is appended after a blank
// line. Text outside the block is kept as it is. A zero m.Version is written
// as Version. Encode fails if m is invalid, if the description holds a broken
// block it cannot safely replace, or if the result is longer than PVE allows.
func Encode(description string, m Metadata) (string, error) {
	if m.Version == 0 {
		m.Version = Version
	}
	if err := m.Validate(); err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(m); err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	block := BeginMarker + "\n" + strings.TrimSuffix(line.String(), "\n") + "\n" + EndMarker

	lines := splitLines(description)
	begin, end, err := findBlock(lines)
	var out string
	switch {
	case errors.Is(err, ErrNoBlock):
		out = NormalizeDescription(description)
		if out != "" {
			out += "\n\n"
		}
		out += block
	case err != nil:
		return "", fmt.Errorf("encode metadata: %w; fix or remove the block in the VM's description by hand", err)
	default:
		before := strings.Join(lines[:begin], "\n")
		after := strings.Join(lines[end+1:], "\n")
		out = block
		if begin > 0 {
			out = before + "\n" + out
		}
		if end+1 < len(lines) {
			out += "\n" + after
		}
	}
	if len(out) > MaxDescriptionLen {
		return "", fmt.Errorf("encode metadata: description would be %d bytes, PVE allows %d; shorten the text outside the agentlab block",
			len(out), MaxDescriptionLen)
	}
	return out, nil
}

// Decode reads the metadata block from description. It returns an error
// wrapping ErrNoBlock when there is no block and one wrapping ErrMalformed
// when a block is present but unusable; callers that act on leases must treat
// both as "do not touch".
func Decode(description string) (Metadata, error) {
	lines := splitLines(description)
	begin, end, err := findBlock(lines)
	if err != nil {
		return Metadata{}, err
	}
	var body []string
	for _, l := range lines[begin+1 : end] {
		if strings.TrimSpace(l) != "" {
			body = append(body, strings.TrimSpace(l))
		}
	}
	if len(body) != 1 {
		return Metadata{}, fmt.Errorf("%w: want one JSON line between the markers, found %d", ErrMalformed, len(body))
	}
	var m Metadata
	if err := json.Unmarshal([]byte(body[0]), &m); err != nil {
		return Metadata{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return Metadata{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

// splitLines splits s into lines, accepting CRLF line ends.
func splitLines(s string) []string {
	return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

// findBlock returns the line indexes of the begin and end markers. Marker
// lines match with surrounding whitespace ignored.
func findBlock(lines []string) (begin, end int, err error) {
	begin, end = -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case BeginMarker:
			if begin >= 0 {
				return 0, 0, fmt.Errorf("%w: more than one %s marker", ErrMalformed, BeginMarker)
			}
			begin = i
		case EndMarker:
			if end >= 0 {
				return 0, 0, fmt.Errorf("%w: more than one %s marker", ErrMalformed, EndMarker)
			}
			end = i
		}
	}
	switch {
	case begin < 0 && end < 0:
		return 0, 0, ErrNoBlock
	case begin < 0:
		return 0, 0, fmt.Errorf("%w: %s without %s", ErrMalformed, EndMarker, BeginMarker)
	case end < 0:
		return 0, 0, fmt.Errorf("%w: %s without %s", ErrMalformed, BeginMarker, EndMarker)
	case end < begin:
		return 0, 0, fmt.Errorf("%w: %s comes before %s", ErrMalformed, EndMarker, BeginMarker)
	}
	return begin, end, nil
}

package pve

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
)

// The resource list of a large cluster is the biggest answer the package
// reads, and the reaper reads it at every tick: 10,000 guests are about 3 MB
// of JSON. decodeStream decodes it in one pass while it arrives, through a
// small window rather than a buffer of the whole body, without reflection
// and with few allocations: the node, type, status, lock, pool and tag
// strings repeat from guest to guest and are made once per list, and the tag
// slices share a few larger arrays.
//
// It decodes exactly what vmListJSON.UnmarshalJSON (encoding/json with flexInt)
// decodes, and gives up on anything else: invalid JSON, a value of a type
// encoding/json would refuse, an escaped or non-ASCII object key, or a
// nesting too deep. send then asks again and decodes that answer with
// encoding/json, which gives the answer or the error the package always
// gave. PVE's own answers never make it give up.

// decodeStream decodes PVE's {"data": [...]} answer from r, size bytes long
// (-1: unknown), into l. It reports false, leaving l as it was, when it gives
// up (see above), and returns the error of a failed read.
func (l *vmList) decodeStream(r io.Reader, size int64) (bool, error) {
	p := newVMParser(r, size, streamWindow)
	vms, ok := p.envelope()
	if p.s.err != nil {
		return false, p.s.err
	}
	if !ok {
		return false, nil
	}
	l.vms = vms
	return true, nil
}

// jsonValue returns l as a value that encoding/json decodes.
func (l *vmList) jsonValue() any { return (*vmListJSON)(l) }

const (
	// streamWindow is the initial size of the window the parser reads
	// through; it grows for longer tokens.
	streamWindow = 32 << 10
	// maxSkipDepth bounds the nesting of skipped values; deeper ones are
	// left to encoding/json.
	maxSkipDepth = 100
	// maxNames bounds the strings a parse shares.
	maxNames = 512
	// tagArenaSize is how many tags one shared array holds.
	tagArenaSize = 1024
)

// vmParser decodes one resource list.
type vmParser struct {
	s     jsonScanner
	size  int64             // length of the input, -1 if unknown
	names map[string]string // strings made so far, to share
	tags  []string          // room for the next tag slices
	lit   []byte            // the current guest's tags literal
}

// newVMParser returns a parser of r, size bytes long (-1: unknown), reading
// through a window of window bytes at first.
func newVMParser(r io.Reader, size int64, window int) *vmParser {
	return &vmParser{s: jsonScanner{r: r, b: make([]byte, 0, window)}, size: size, names: map[string]string{}}
}

// envelope decodes {"data": [...]}: the whole input.
func (p *vmParser) envelope() ([]VMEntry, bool) {
	s := &p.s
	if !s.consume('{') {
		return nil, false
	}
	var vms []VMEntry
	if !s.consume('}') {
		for {
			key, plain, ok := s.str()
			isData := ok && plain && equalFoldASCII(key[1:len(key)-1], "data")
			if !ok || !plain || !s.consume(':') {
				return nil, false
			}
			switch {
			case !isData:
				ok = s.skip(0)
			case s.word("null"):
				vms = nil
			default:
				vms, ok = p.list()
			}
			if !ok {
				return nil, false
			}
			if s.consume(',') {
				continue
			}
			if !s.consume('}') {
				return nil, false
			}
			break
		}
	}
	return vms, s.end()
}

// list decodes the array of guests.
func (p *vmParser) list() ([]VMEntry, bool) {
	s := &p.s
	if !s.consume('[') {
		return nil, false
	}
	vms := []VMEntry{}
	if s.consume(']') {
		return vms, true
	}
	start := s.pos()
	for {
		if s.word("null") {
			vms = append(vms, VMEntry{})
		} else {
			e, ok := p.item()
			if !ok {
				return nil, false
			}
			vms = append(vms, e)
		}
		if len(vms) == 32 && p.size > 0 {
			// Size the list once from the length of the first items.
			if est := int64(len(vms))*(p.size-start)/(s.pos()-start) + 16; est > int64(cap(vms)) && est < p.size {
				vms = slices.Grow(vms, int(est)-len(vms))
			}
		}
		if s.consume(',') {
			continue
		}
		return vms, s.consume(']')
	}
}

// vmKey identifies the members of a guest the parser decodes.
type vmKey int

const (
	keyOther vmKey = iota
	keyVMID
	keyTemplate
	keyUptime
	keyMaxMem
	keyMaxDisk
	keyMaxCPU
	keyNode
	keyType
	keyName
	keyStatus
	keyLock
	keyPool
	keyTags
)

// lookupVMKey finds an object key (plain ASCII) the way encoding/json
// matches struct fields: exactly or else ignoring case.
func lookupVMKey(key []byte) vmKey {
	switch string(key) {
	case "vmid":
		return keyVMID
	case "template":
		return keyTemplate
	case "uptime":
		return keyUptime
	case "maxmem":
		return keyMaxMem
	case "maxdisk":
		return keyMaxDisk
	case "maxcpu":
		return keyMaxCPU
	case "node":
		return keyNode
	case "type":
		return keyType
	case "name":
		return keyName
	case "status":
		return keyStatus
	case "lock":
		return keyLock
	case "pool":
		return keyPool
	case "tags":
		return keyTags
	}
	var lower [8]byte // as long as the longest key
	if len(key) > len(lower) {
		return keyOther
	}
	folded := false
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			folded = true
		}
		lower[i] = c
	}
	if !folded {
		return keyOther
	}
	return lookupVMKey(lower[:len(key)])
}

// item decodes one guest.
func (p *vmParser) item() (VMEntry, bool) {
	s := &p.s
	var (
		e VMEntry
		f vmFields
	)
	if !s.consume('{') {
		return e, false
	}
	if s.consume('}') {
		return f.entry(e, nil), true
	}
	hasTags := false
	for {
		key, plain, ok := s.str()
		if !ok || !plain {
			return e, false
		}
		k := lookupVMKey(key[1 : len(key)-1])
		if !s.consume(':') {
			return e, false
		}
		switch {
		case k == keyOther:
			ok = s.skip(0)
		case k <= keyMaxCPU:
			ok = p.number(f.field(k))
		case s.word("null"):
			// null leaves a string as it was
		case k == keyTags:
			var lit []byte
			if lit, _, ok = s.str(); ok {
				p.lit, hasTags = append(p.lit[:0], lit...), true
			}
		default:
			ok = p.text(e.field(k), k != keyName)
		}
		if !ok {
			return e, false
		}
		if s.consume(',') {
			continue
		}
		if !s.consume('}') {
			return e, false
		}
		break
	}
	if !hasTags {
		return f.entry(e, nil), true
	}
	t, ok := p.splitTags(p.lit)
	return f.entry(e, t), ok
}

// field returns the number member k of f.
func (f *vmFields) field(k vmKey) *int64 {
	switch k {
	case keyVMID:
		return &f.VMID
	case keyTemplate:
		return &f.Template
	case keyUptime:
		return &f.Uptime
	case keyMaxMem:
		return &f.MaxMem
	case keyMaxDisk:
		return &f.MaxDisk
	}
	return &f.MaxCPU
}

// field returns the string member k of e.
func (e *VMEntry) field(k vmKey) *string {
	switch k {
	case keyNode:
		return &e.Node
	case keyType:
		return &e.Type
	case keyName:
		return &e.Name
	case keyStatus:
		return &e.Status
	case keyLock:
		return &e.Lock
	}
	return &e.Pool
}

// number decodes a flexInt member into dst.
func (p *vmParser) number(dst *int64) bool {
	s := &p.s
	var b []byte
	ok := false
	switch s.peek() {
	case '"':
		var plain bool
		b, plain, ok = s.str()
		ok = ok && plain
		if ok {
			b = b[1 : len(b)-1]
		}
	case 't':
		*dst = 1
		return s.word("true")
	case 'f':
		*dst = 0
		return s.word("false")
	case 'n':
		*dst = 0
		return s.word("null")
	default:
		b, ok = s.number()
	}
	if ok {
		*dst, ok = flexValue(b)
	}
	return ok
}

// flexValue is flexInt.UnmarshalJSON for a number literal or the contents of
// a string literal without escapes.
func flexValue(b []byte) (int64, bool) {
	switch string(b) {
	case "", "null", "false":
		return 0, true
	case "true":
		return 1, true
	}
	if n, ok := smallInt(b); ok {
		return n, true
	}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return n, true
	}
	x, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, false
	}
	return int64(x), true
}

// smallInt parses an optional '-' and 1 to 18 decimal digits.
func smallInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// text decodes a string member into dst; shared makes it a string the
// parse shares.
func (p *vmParser) text(dst *string, shared bool) bool {
	lit, plain, ok := p.s.str()
	switch {
	case !ok:
		return false
	case !plain:
		*dst, ok = unquote(lit)
	case shared:
		*dst = p.name(lit[1 : len(lit)-1])
	default:
		*dst = string(lit[1 : len(lit)-1])
	}
	return ok
}

// name returns b as a string, shared with earlier equal ones.
func (p *vmParser) name(b []byte) string {
	if v, ok := p.names[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(p.names) < maxNames {
		p.names[v] = v
	}
	return v
}

// unquote decodes a string literal with escapes or non-ASCII bytes the way
// encoding/json does (invalid UTF-8 becomes U+FFFD).
func unquote(lit []byte) (string, bool) {
	var v string
	if err := json.Unmarshal(lit, &v); err != nil {
		return "", false
	}
	return v, true
}

// splitTags splits the tags' string literal lit.
func (p *vmParser) splitTags(lit []byte) ([]string, bool) {
	if b := lit[1 : len(lit)-1]; plainASCII(b) {
		n := countTags(b)
		if n == 0 {
			return nil, true
		}
		return splitTagList(p.tagSlots(n), b, p.name), true
	}
	v, ok := unquote(lit)
	if !ok {
		return nil, false
	}
	n := countTags(v)
	if n == 0 {
		return nil, true
	}
	return splitTagList(p.tagSlots(n), v, func(t string) string { return t }), true
}

// tagSlots returns an empty slice with room for n tags, cut from a shared
// array; appending beyond n copies.
func (p *vmParser) tagSlots(n int) []string {
	if cap(p.tags)-len(p.tags) < n {
		p.tags = make([]string, 0, max(n, tagArenaSize))
	}
	i := len(p.tags)
	p.tags = p.tags[:i+n]
	return p.tags[i : i : i+n]
}

// plainASCII reports whether b is ASCII without backslashes: string contents
// that are the same once decoded.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// equalFoldASCII reports whether the ASCII key equals the lower-case name,
// ignoring case.
func equalFoldASCII(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// jsonScanner reads JSON tokens from r through the window b, checking the
// syntax as strictly as encoding/json does. A token it returns is valid
// until the next read.
type jsonScanner struct {
	r    io.Reader
	b    []byte // the window: b[i:] is read but not scanned
	i    int
	done int64 // bytes dropped from the window before b[0]
	eof  bool
	err  error // a failed read
}

// pos returns the offset of the next byte in the input.
func (s *jsonScanner) pos() int64 { return s.done + int64(s.i) }

// more reads more input into the window. The unscanned bytes b[i:] move to
// the front (i becomes 0), and the window grows when they fill it. It
// reports false at the end of the input or after a failed read.
func (s *jsonScanner) more() bool {
	if s.eof || s.err != nil {
		return false
	}
	n := copy(s.b[:cap(s.b)], s.b[s.i:])
	s.done += int64(s.i)
	s.b, s.i = s.b[:n], 0
	if n == cap(s.b) {
		s.b = append(make([]byte, 0, 2*cap(s.b)), s.b...)
	}
	for range 100 {
		m, err := s.r.Read(s.b[n:cap(s.b)])
		s.b = s.b[:n+m]
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			s.err = err
		}
		if m > 0 {
			return true
		}
		if s.eof || s.err != nil {
			return false
		}
	}
	s.err = io.ErrNoProgress
	return false
}

// space skips JSON white space.
func (s *jsonScanner) space() {
	for {
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ' ', '\t', '\n', '\r':
				s.i++
				continue
			}
			return
		}
		if !s.more() {
			return
		}
	}
}

// end reports whether only white space is left.
func (s *jsonScanner) end() bool {
	s.space()
	return s.i == len(s.b) && s.eof
}

// peek returns the next byte after white space, 0 at the end.
func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return s.b[s.i] // no white space, the common case
	}
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// consume reads c, after white space, if it comes next.
func (s *jsonScanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// word reads the literal w (true, false, null) if it comes next.
func (s *jsonScanner) word(w string) bool {
	s.space()
	for len(s.b)-s.i < len(w) {
		if !s.more() {
			return false
		}
	}
	if string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// str reads a string literal, quotes included, and reports whether it is
// plain: ASCII without escapes, the same once decoded.
func (s *jsonScanner) str() (lit []byte, plain, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	plain = true
	for j := 1; ; j++ {
		// Skip plain ASCII, the common case, in the window.
		for _, c := range s.b[s.i+j:] {
			if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				break
			}
			j++
		}
		if s.i+j >= len(s.b) {
			if !s.more() {
				return nil, false, false
			}
			j--
			continue
		}
		switch c := s.b[s.i+j]; {
		case c == '"':
			lit = s.b[s.i : s.i+j+1]
			s.i += j + 1
			return lit, plain, true
		case c == '\\':
			plain = false
			j++
			if s.i+j >= len(s.b) && !s.more() {
				return nil, false, false
			}
			switch s.b[s.i+j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					j++
					if s.i+j >= len(s.b) && !s.more() {
						return nil, false, false
					}
					if h := s.b[s.i+j]; !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return nil, false, false
					}
				}
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default: // not ASCII
			plain = false
		}
	}
}

// number reads a number literal.
func (s *jsonScanner) number() ([]byte, bool) {
	s.space()
	n := 0
	for {
		// The literal is what can be part of one; valid JSON has a
		// delimiter after it.
		rest := s.b[s.i:]
		for n = 0; n < len(rest); n++ {
			if c := rest[n]; !('0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
				break
			}
		}
		if n < len(rest) || !s.more() {
			break
		}
	}
	lit := s.b[s.i : s.i+n]
	if !validNumber(lit) {
		return nil, false
	}
	s.i += n
	return lit, true
}

// validNumber reports whether b is a JSON number.
func validNumber(b []byte) bool {
	i := 0
	digits := func() bool {
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > d
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(b)
}

// skip reads any value, depth levels deep in skipped values.
func (s *jsonScanner) skip(depth int) bool {
	if depth > maxSkipDepth {
		return false
	}
	switch s.peek() {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{':
		s.i++
		if s.consume('}') {
			return true
		}
		for {
			if _, _, ok := s.str(); !ok || !s.consume(':') || !s.skip(depth+1) {
				return false
			}
			if !s.consume(',') {
				return s.consume('}')
			}
		}
	case '[':
		s.i++
		if s.consume(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if !s.consume(',') {
				return s.consume(']')
			}
		}
	case 't':
		return s.word("true")
	case 'f':
		return s.word("false")
	case 'n':
		return s.word("null")
	}
	_, ok := s.number()
	return ok
}

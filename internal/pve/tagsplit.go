package pve

// isTagSep reports whether c separates tags in a PVE tag list: ';', ',' or
// white space (the characters of the pattern [;,\s]+ SplitTags documents).
func isTagSep(c byte) bool {
	switch c {
	case ';', ',', ' ', '\t', '\n', '\f', '\r':
		return true
	}
	return false
}

// countTags returns how many tags the list s holds.
func countTags[S string | []byte](s S) int {
	n := 0
	in := false
	for i := 0; i < len(s); i++ {
		sep := isTagSep(s[i])
		if !sep && !in {
			n++
		}
		in = !sep
	}
	return n
}

// splitTagList splits the tag list s into dst, which must have room for
// countTags(s) tags, making each tag with str. It returns dst.
func splitTagList[S string | []byte](dst []string, s S, str func(S) string) []string {
	start := -1
	for i := 0; i < len(s); i++ {
		if isTagSep(s[i]) {
			if start >= 0 {
				dst = append(dst, str(s[start:i]))
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		dst = append(dst, str(s[start:]))
	}
	return dst
}

// splitTags is SplitTags without a regular expression: the tags of s as
// substrings of s, nil when there are none.
func splitTags(s string) []string {
	n := countTags(s)
	if n == 0 {
		return nil
	}
	return splitTagList(make([]string, 0, n), s, func(t string) string { return t })
}

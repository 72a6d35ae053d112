// Package suggest finds the name a user probably meant, for "did you mean"
// hints in configuration errors (profiles, the reaper's YAML).
package suggest

// maxDistance is how many edits a typo may be from the name it stands for.
const maxDistance = 2

// Closest returns the candidate within two edits of s (the first of the
// nearest), or "" when none is that close.
func Closest(s string, candidates []string) string {
	best, bestDist := "", maxDistance+1
	for _, c := range candidates {
		if d := Distance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

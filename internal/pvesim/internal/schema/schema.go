// Package schema is the reduced form of PVE's API schema kept in
// internal/pvesim/testdata/schema.json: only the facts the simulator's
// conformance tests need about the paths it serves.
package schema

// File is the whole reduced schema.
type File struct {
	// Source says where the data came from.
	Source string `json:"source"`
	// Methods are the API methods, sorted by path and method.
	Methods []Method `json:"methods"`
}

// Method is one API method of PVE.
type Method struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	Returns string `json:"returns,omitempty"`
	// Protected marks methods pveproxy forwards to pvedaemon, which runs
	// them as root (the schema's "protected" flag).
	Protected bool             `json:"protected,omitempty"`
	Params    map[string]Param `json:"params"`
}

// Param is one parameter of a Method.
type Param struct {
	Type      string   `json:"type,omitempty"`
	Optional  bool     `json:"optional,omitempty"`
	Format    string   `json:"format,omitempty"`
	Pattern   string   `json:"pattern,omitempty"`
	Enum      []string `json:"enum,omitempty"`
	Minimum   *float64 `json:"minimum,omitempty"`
	Maximum   *float64 `json:"maximum,omitempty"`
	MaxLength int      `json:"maxLength,omitempty"`
}

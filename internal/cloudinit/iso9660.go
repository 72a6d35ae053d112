package cloudinit

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// VolumeLabel is the seed ISO's volume identifier. cloud-init looks for a
// file system labelled "cidata" or "CIDATA"; older releases match only the
// lower-case form, which is also what Proxmox VE and cloud-localds write, so
// the label is lower-case although ISO 9660 asks for upper-case d-characters.
const VolumeLabel = "cidata"

// ISO 9660 (ECMA-119) with Rock Ridge (RRIP 1.10, on SUSP 1.10) for the file
// names: a plain ISO 9660 name cannot hold "user-data" (Linux would show
// "user_data"), and cloud-init opens the files by their exact names.
//
// Layout, in 2048-byte sectors:
//
//	0-15   system area (zero)
//	16     primary volume descriptor
//	17     volume descriptor set terminator
//	18     type L path table
//	19     type M path table
//	20     root directory
//	21     SUSP continuation area holding the Rock Ridge ER entry
//	22...  file contents, each starting on a sector
//
// Dates are left "not specified" so the same seed always gives the same bytes.
const (
	sectorSize     = 2048
	systemSectors  = 16
	pvdSector      = 16
	termSector     = 17
	lPathSector    = 18
	mPathSector    = 19
	rootSector     = 20
	maxDirRecord   = 255
	maxISONameBody = 30 // ISO 9660 level 2: name and extension together
	// maxNameLen keeps every directory record within 255 bytes.
	maxNameLen = 100
	// maxFileSize keeps sizes and sector numbers far inside 32 bits.
	maxFileSize = 64 << 20
)

// ER entry texts, as RRIP 1.10 recommends them.
const (
	rripID         = "RRIP_1991A"
	rripDescriptor = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rripSource     = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."
)

// POSIX modes written in Rock Ridge PX entries.
const (
	modeDir  = 0o040555
	modeFile = 0o100444
)

// isoFile is one file in the image's root directory.
type isoFile struct {
	name string // Rock Ridge name, e.g. "user-data"
	data []byte
}

// ISO returns the seed as a NoCloud ISO image labelled VolumeLabel, with the
// files UserDataFile, MetaDataFile and NetworkConfigFile in its root.
func (s Seed) ISO() ([]byte, error) {
	return buildISO(VolumeLabel, []isoFile{
		{UserDataFile, s.UserData},
		{MetaDataFile, s.MetaData},
		{NetworkConfigFile, s.NetworkConfig},
	})
}

// placed is a file with its ISO 9660 identifier and location.
type placed struct {
	isoFile
	id     string // ISO 9660 identifier, e.g. "USER_DATA.;1"
	sector uint32
}

func buildISO(label string, files []isoFile) ([]byte, error) {
	if label == "" || len(label) > 32 {
		return nil, fmt.Errorf("volume label %q: want 1 to 32 characters", label)
	}
	entries := make([]placed, 0, len(files))
	ids := map[string]string{}
	for _, f := range files {
		if f.name == "" || len(f.name) > maxNameLen || strings.ContainsAny(f.name, "/\x00") || f.name == "." || f.name == ".." {
			return nil, fmt.Errorf("file name %q: want 1 to %d bytes without '/' or NUL", f.name, maxNameLen)
		}
		if len(f.data) > maxFileSize {
			return nil, fmt.Errorf("file %q: %d bytes is more than a seed file may hold (%d)", f.name, len(f.data), maxFileSize)
		}
		id := isoIdentifier(f.name)
		if other, ok := ids[id]; ok {
			return nil, fmt.Errorf("files %q and %q both map to the ISO 9660 name %q", other, f.name, id)
		}
		ids[id] = f.name
		entries = append(entries, placed{isoFile: f, id: id})
	}
	// ECMA-119 9.3: records are ordered by file identifier. With only
	// d-characters, '.' and ';' in identifiers, byte order of the name and
	// then the extension is that order.
	slices.SortFunc(entries, func(a, b placed) int {
		an, ae, _ := strings.Cut(a.id, ".")
		bn, be, _ := strings.Cut(b.id, ".")
		if c := strings.Compare(an, bn); c != 0 {
			return c
		}
		return strings.Compare(ae, be)
	})

	// Record sizes do not depend on locations, so the layout is known before
	// anything is placed. The root directory is one sector: room for about
	// eighteen seed files.
	er := erEntry()
	dirSize := len(dotRecord(0, 0, 0)) + len(dotDotRecord(0))
	for _, e := range entries {
		dirSize += len(fileRecord(e, 0))
	}
	if dirSize > sectorSize {
		return nil, fmt.Errorf("%d files need a %d-byte root directory; at most %d bytes fit", len(entries), dirSize, sectorSize)
	}
	const ceSector = rootSector + 1
	next := uint32(ceSector + 1)
	for i := range entries {
		entries[i].sector = next
		next += sectorsFor(len(entries[i].data))
	}
	total := next

	var dir []byte
	dir = append(dir, dotRecord(sectorSize, ceSector, uint32(len(er)))...)
	dir = append(dir, dotDotRecord(sectorSize)...)
	for _, e := range entries {
		dir = append(dir, fileRecord(e, uint32(len(e.data)))...)
	}

	img := make([]byte, int(total)*sectorSize)
	writePVD(img[pvdSector*sectorSize:], label, total)
	writeTerminator(img[termSector*sectorSize:])
	writePathTable(img[lPathSector*sectorSize:], binary.LittleEndian)
	writePathTable(img[mPathSector*sectorSize:], binary.BigEndian)
	copy(img[rootSector*sectorSize:], dir)
	copy(img[ceSector*sectorSize:], er)
	for _, e := range entries {
		copy(img[int(e.sector)*sectorSize:], e.data)
	}
	return img, nil
}

// isoIdentifier maps a name to an ISO 9660 level 2 file identifier: upper-case
// d-characters, "NAME.EXT;1".
func isoIdentifier(name string) string {
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	base, ext = dChars(base), dChars(ext)
	if len(ext) > 8 {
		ext = ext[:8]
	}
	if len(base)+len(ext) > maxISONameBody {
		base = base[:maxISONameBody-len(ext)]
	}
	return base + "." + ext + ";1"
}

// dChars upper-cases s and replaces everything but A-Z, 0-9 and '_' with '_'.
func dChars(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// sectorsFor is how many sectors n bytes of file data take; an empty file
// still gets one, so that every extent lies inside the volume.
func sectorsFor(n int) uint32 {
	return max(1, uint32((n+sectorSize-1)/sectorSize))
}

// dirRecord builds a directory record (ECMA-119 9.1) with system use field su.
func dirRecord(id []byte, extent, size uint32, dir bool, su []byte) []byte {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++ // padding byte after an even-length identifier
	}
	n += len(su)
	if n%2 == 1 {
		n++ // records have even length
	}
	if n > maxDirRecord {
		// Unreachable: buildISO bounds names to maxNameLen.
		panic(fmt.Sprintf("directory record of %d bytes", n))
	}
	r := make([]byte, n)
	r[0] = byte(n)
	both32(r[2:], extent)
	both32(r[10:], size)
	// r[18:25]: recording date, all zero: not specified.
	if dir {
		r[25] = 0x02
	}
	both16(r[28:], 1) // volume sequence number
	r[32] = byte(len(id))
	copy(r[33:], id)
	suStart := 33 + len(id)
	if len(id)%2 == 0 {
		suStart++
	}
	copy(r[suStart:], su)
	return r
}

// dotRecord is the root's "." record. Its system use field starts the SUSP
// area: SP, the directory's PX, and a CE pointing at the ER entry.
func dotRecord(size, ceSector, ceLen uint32) []byte {
	su := spEntry()
	su = append(su, pxEntry(modeDir, 2)...)
	su = append(su, ceEntry(ceSector, 0, ceLen)...)
	return dirRecord([]byte{0}, rootSector, size, true, su)
}

// dotDotRecord is the root's ".." record; the root is its own parent.
func dotDotRecord(size uint32) []byte {
	return dirRecord([]byte{1}, rootSector, size, true, pxEntry(modeDir, 2))
}

func fileRecord(e placed, size uint32) []byte {
	su := rrEntry()
	su = append(su, pxEntry(modeFile, 1)...)
	su = append(su, nmEntry(e.name)...)
	return dirRecord([]byte(e.id), e.sector, size, false, su)
}

// suEntry starts a SUSP entry of the given signature, length and version 1.
func suEntry(sig string, length int) []byte {
	b := make([]byte, length)
	b[0], b[1], b[2], b[3] = sig[0], sig[1], byte(length), 1
	return b
}

// spEntry is SUSP's "SP" indicator: SUSP is in use, no bytes skipped.
func spEntry() []byte {
	b := suEntry("SP", 7)
	b[4], b[5], b[6] = 0xBE, 0xEF, 0
	return b
}

// ceEntry is SUSP's continuation area pointer.
func ceEntry(sector, offset, length uint32) []byte {
	b := suEntry("CE", 28)
	both32(b[4:], sector)
	both32(b[12:], offset)
	both32(b[20:], length)
	return b
}

// erEntry is SUSP's extensions reference naming Rock Ridge.
func erEntry() []byte {
	n := 8 + len(rripID) + len(rripDescriptor) + len(rripSource)
	b := suEntry("ER", n)
	b[4], b[5], b[6], b[7] = byte(len(rripID)), byte(len(rripDescriptor)), byte(len(rripSource)), 1
	copy(b[8:], rripID+rripDescriptor+rripSource)
	return b
}

// rrEntry is RRIP 1.09's "RR" flags entry, listing PX and NM. Linux stops
// reading Rock Ridge data at an RR entry that names neither.
func rrEntry() []byte {
	b := suEntry("RR", 5)
	b[4] = 0x01 | 0x08
	return b
}

// pxEntry is Rock Ridge's POSIX attributes entry: mode, links, uid 0, gid 0.
func pxEntry(mode, links uint32) []byte {
	b := suEntry("PX", 36)
	both32(b[4:], mode)
	both32(b[12:], links)
	return b
}

// nmEntry is Rock Ridge's alternate (real) name entry.
func nmEntry(name string) []byte {
	b := suEntry("NM", 5+len(name))
	copy(b[5:], name)
	return b
}

func writePVD(b []byte, label string, totalSectors uint32) {
	b[0] = 1
	copy(b[1:6], "CD001")
	b[6] = 1
	pad(b[8:40], "")     // system identifier
	pad(b[40:72], label) // volume identifier
	both32(b[80:], totalSectors)
	both16(b[120:], 1) // volume set size
	both16(b[124:], 1) // volume sequence number
	both16(b[128:], sectorSize)
	both32(b[132:], pathTableSize)
	binary.LittleEndian.PutUint32(b[140:], lPathSector)
	binary.BigEndian.PutUint32(b[148:], mPathSector)
	root := dirRecord([]byte{0}, rootSector, sectorSize, true, nil)
	copy(b[156:190], root)
	pad(b[190:318], "")         // volume set identifier
	pad(b[318:446], "AGENTLAB") // publisher identifier
	pad(b[446:574], "")         // data preparer identifier
	pad(b[574:702], "AGENTLAB CLOUD-INIT SEED")
	pad(b[702:739], "") // copyright file identifier
	pad(b[739:776], "") // abstract file identifier
	pad(b[776:813], "") // bibliographic file identifier
	for _, off := range []int{813, 830, 847, 864} {
		unspecifiedDate(b[off : off+17])
	}
	b[881] = 1 // file structure version
}

func writeTerminator(b []byte) {
	b[0] = 255
	copy(b[1:6], "CD001")
	b[6] = 1
}

// pathTableSize is the size of a path table holding only the root.
const pathTableSize = 10

// writePathTable writes a path table with the root directory only
// (ECMA-119 9.4); order is little-endian for type L, big-endian for type M.
func writePathTable(b []byte, order binary.ByteOrder) {
	b[0] = 1 // length of directory identifier
	order.PutUint32(b[2:], rootSector)
	order.PutUint16(b[6:], 1) // parent directory number
	b[8] = 0                  // root identifier; b[9] pads to even length
}

// unspecifiedDate writes ECMA-119 8.4.26.1's "not specified" date:
// sixteen '0' digits and a zero time zone offset.
func unspecifiedDate(b []byte) {
	for i := 0; i < 16; i++ {
		b[i] = '0'
	}
	b[16] = 0
}

// pad fills b with s followed by spaces.
func pad(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

// both32 writes v as ECMA-119 7.3.3 both-byte-order: little- then big-endian.
func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// both16 writes v as ECMA-119 7.2.3 both-byte-order.
func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:], v)
	binary.BigEndian.PutUint16(b[2:], v)
}

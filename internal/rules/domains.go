package rules

import "strings"

// Domain matching. Every domain list in the config (a category, or the inline
// domains of a rule) is a "set" with a small integer id. One hash map over all
// patterns of all sets answers, for a name, which sets match it: Decide walks
// the name's suffixes ("a.b.tiktok.com", "b.tiktok.com", "tiktok.com", "com")
// and looks each one up, so the cost grows with the number of labels in the
// name, never with the number of domains.

const (
	kindExact uint32 = 1 << iota // pattern "name" matches the name itself
	kindSub                      // pattern "name" or "*.name" matches subdomains
	kindMask  = kindExact | kindSub

	overflowBit = 1 << 31
	maxSets     = 1 << 29
)

// domainIndex maps a pattern's base name to the sets that hold it. A value
// without overflowBit is a single set: id<<2 | kinds. With overflowBit, the
// rest indexes overflow, for names that are in several sets.
type domainIndex struct {
	names    map[string]uint32
	overflow [][]uint32 // each element: id<<2 | kinds
}

func newDomainIndex(sizeHint int) *domainIndex {
	return &domainIndex{names: make(map[string]uint32, sizeHint)}
}

// add records that set id holds pattern base with the given kinds.
func (x *domainIndex) add(base string, id uint32, kinds uint32) {
	v := id<<2 | kinds
	old, ok := x.names[base]
	if !ok {
		x.names[base] = v
		return
	}
	if old&overflowBit == 0 {
		if old>>2 == id {
			x.names[base] = old | kinds
			return
		}
		x.overflow = append(x.overflow, []uint32{old, v})
		x.names[base] = overflowBit | uint32(len(x.overflow)-1)
		return
	}
	list := x.overflow[old&^overflowBit]
	for i, e := range list {
		if e>>2 == id {
			list[i] = e | kinds
			return
		}
	}
	x.overflow[old&^overflowBit] = append(list, v)
}

// match appends to hits the ids of the sets that match name, and returns it.
// name must be normalised. With a caller's stack buffer it does not allocate.
func (x *domainIndex) match(name string, hits []uint32) []uint32 {
	if name == "" {
		return hits
	}
	suffix := name
	for {
		if v, ok := x.names[suffix]; ok {
			want := kindSub
			if len(suffix) == len(name) {
				want = kindExact
			}
			if v&overflowBit == 0 {
				if v&want != 0 {
					hits = append(hits, v>>2)
				}
			} else {
				for _, e := range x.overflow[v&^overflowBit] {
					if e&want != 0 {
						hits = append(hits, e>>2)
					}
				}
			}
		}
		dot := strings.IndexByte(suffix, '.')
		if dot < 0 {
			return hits
		}
		suffix = suffix[dot+1:]
	}
}

// size is the number of distinct base names.
func (x *domainIndex) size() int { return len(x.names) }

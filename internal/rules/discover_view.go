package rules

// A read-only view of the compiled domain lists for `egress discover`
// (internal/discover): which lists of the config hold a name. It never
// decides anything and never changes the policy.

// DiscoverLists reports, for a normalised hostname, the categories whose
// lists hold it (appended to cats, in config order) and whether any domain
// list of the config holds it: a category, or the inline domains of a rule.
// Matching is Decide's (exact names, subdomains of "name" and "*.name"
// patterns).
func (c *Config) DiscoverLists(name string, cats []string) (_ []string, listed bool) {
	if c == nil || c.Policy == nil || c.Policy.domains == nil {
		return cats, false
	}
	var buf [16]uint32
	hits := c.Policy.domains.match(name, buf[:0])
	for _, id := range hits {
		// Categories are compiled first, in config order, one set each
		// (compileCategories), so a category's set id is its index in
		// c.Categories; sets of inline rule domains come after them.
		// TestDiscoverListsCategoryIDs guards this.
		if int(id) < len(c.Categories) {
			cats = append(cats, c.Categories[id].Name)
		}
	}
	return cats, len(hits) > 0
}

// DiscoverCategory returns the index of the named category in c.Categories,
// or -1.
func (c *Config) DiscoverCategory(name string) int {
	if c == nil {
		return -1
	}
	for i, cat := range c.Categories {
		if cat.Name == name {
			return i
		}
	}
	return -1
}

// DiscoverInCategory reports whether the normalised hostname is held by the
// category at index cat (DiscoverCategory), and whether any domain list of
// the config holds it.
func (c *Config) DiscoverInCategory(name string, cat int) (in, listed bool) {
	if c == nil || c.Policy == nil || c.Policy.domains == nil {
		return false, false
	}
	var buf [16]uint32
	hits := c.Policy.domains.match(name, buf[:0])
	for _, id := range hits {
		if int(id) == cat {
			return true, true
		}
	}
	return false, len(hits) > 0
}

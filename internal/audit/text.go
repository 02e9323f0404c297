package audit

import "unicode/utf8"

// Escaping shared by the encoders. Both encodings guarantee one event = one line:
// no byte of a field can end the record, start another one, or forge a field.

const hexDigits = "0123456789abcdef"

// clip cuts s to MaxFieldLen bytes, backing up to a character boundary.
func clip(s string) string {
	if len(s) <= MaxFieldLen {
		return s
	}
	n := MaxFieldLen
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// lineBreakRune reports runes that some line splitters treat as a line end
// (NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR) and the other C1 controls.
func lineBreakRune(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

// appendJSONString appends s, clipped, as a JSON string. Control characters and
// the Unicode line breaks are \u-escaped; each invalid UTF-8 byte becomes \ufffd
// (as encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	s = clip(s)
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if lineBreakRune(r) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendCEF appends s, clipped, escaped for CEF. In a header field (ext false)
// `\` and `|` are escaped; in an extension value `\` and `=` are escaped and LF and
// CR become the two-character sequences \n and \r. Bytes CEF has no escape for
// (other controls, the Unicode line breaks, invalid UTF-8) become U+FFFD.
func appendCEF(b []byte, s string, ext bool) []byte {
	return escapeCEF(b, clip(s), ext)
}

// escapeCEF is appendCEF without the clipping.
func escapeCEF(b []byte, s string, ext bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			var esc string
			switch {
			case c == '\\':
				esc = `\\`
			case c == '|' && !ext:
				esc = `\|`
			case c == '=' && ext:
				esc = `\=`
			case c == '\n' && ext:
				esc = `\n`
			case c == '\r' && ext:
				esc = `\r`
			case c < 0x20 || c == 0x7f:
				esc = "\uFFFD"
			default:
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, esc...)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || lineBreakRune(r) {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

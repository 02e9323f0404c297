package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// FuzzVerifyNegotiate feeds arbitrary Negotiate tokens (the bytes after
// base64 decoding) to the verifier: no panic, never an identity, always
// ErrBadCredentials.
func FuzzVerifyNegotiate(f *testing.F) {
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/localhost", "TEST.EGRESS", "fuzz", time.Now(), 1, etypeID.AES256_CTS_HMAC_SHA1_96); err != nil {
		f.Fatal(err)
	}
	b, _ := kt.Marshal()
	path := filepath.Join(f.TempDir(), "fuzz.keytab")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		f.Fatal(err)
	}
	k, err := NewKerberos(KerberosConfig{Keytab: path}, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, mech := range []asn1.ObjectIdentifier{{1, 2, 840, 113554, 1, 2, 2}, {1, 2, 840, 48018, 1, 2, 2}, {1, 3, 6, 1, 4, 1, 311, 2, 2, 10}} {
		st := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
			MechTypes:      []asn1.ObjectIdentifier{mech},
			MechTokenBytes: []byte{0x60, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00, 0x6e, 0x00},
		}}
		if seed, err := st.Marshal(); err == nil {
			f.Add(seed)
		}
	}
	f.Add([]byte{0x60, 0x00})
	f.Add([]byte{0xa1, 0x03, 0x30, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, token []byte) {
		id, resp, err := k.VerifyNegotiate(context.Background(), token)
		if err == nil || id.Known() || resp != nil || !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("token %x: %+v, %x, %v", token, id, resp, err)
		}
	})
}

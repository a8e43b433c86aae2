package pin

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/util/signedct"
)

// A CTLog is a Certificate Transparency log whose signed certificate
// timestamps (SCTs) count for a rule that requires them
// ([Domain.RequireSCTs]). SCTs must come from logs of at least two
// operators, as browsers require.
type CTLog struct {
	// Key is the log's public key (ECDSA P-256 or RSA ≥ 2048); KeyDER its
	// DER SubjectPublicKeyInfo; ID the RFC 6962 log ID, SHA-256 of KeyDER.
	Key    crypto.PublicKey
	KeyDER []byte
	ID     [sha256.Size]byte
	// Operator names who runs the log; Description is free text.
	Operator    string
	Description string
}

// NewCTLog returns the log of a DER public key.
func NewCTLog(keyDER []byte, operator, description string) (CTLog, error) {
	k, err := signedct.ParseKey(keyDER)
	if err != nil {
		return CTLog{}, fmt.Errorf("pin: CT log %q: %w", description, err)
	}
	operator = strings.TrimSpace(operator)
	if operator == "" {
		return CTLog{}, fmt.Errorf("pin: CT log %q: no operator", description)
	}
	return CTLog{Key: k, KeyDER: append([]byte(nil), keyDER...), ID: sha256.Sum256(keyDER), Operator: operator, Description: description}, nil
}

// operatorKey is how operators are told apart: "Google" and "google " are
// one operator.
func operatorKey(op string) string { return strings.ToLower(strings.TrimSpace(op)) }

// ErrSCTLogs is wrapped by the [PolicyError] of a rule that requires SCTs
// in a policy whose CT logs are not of two operators or more.
var ErrSCTLogs = errors.New("require_scts needs ct_logs of at least two operators")

// sctSkew is how far in the future an SCT's timestamp may be.
const sctSkew = 5 * time.Minute

// An SCTError says why a certificate lacks the SCTs its rule requires.
type SCTError struct {
	Host, Rule string
	// Embedded and Delivered count the valid SCTs found in the
	// certificate and in the TLS handshake, each from a distinct log;
	// NeedEmbedded is how many embedded ones the certificate's lifetime
	// calls for; Operators counts the distinct operators of all of them.
	Embedded, Delivered, NeedEmbedded, Operators int
	// Problems are the SCTs that did not count, and why.
	Problems []string
}

func (e *SCTError) Error() string {
	msg := fmt.Sprintf("pin: %s (rule %s): not enough valid SCTs: %d embedded (%d needed), %d from the TLS handshake (2 needed), from %d operator(s) (2 needed)",
		e.Host, e.Rule, e.Embedded, e.NeedEmbedded, e.Delivered, e.Operators)
	if len(e.Problems) > 0 {
		msg += "; " + strings.Join(e.Problems, "; ")
	}
	return msg
}

// checkSCTs applies the SCT rule of Chrome's and Apple's CT policies to
// the verified chain: embedded SCTs (verified as precertificate entries:
// the issuer's key hash and the TBS without the SCT list) from 2 distinct
// logs for a certificate valid 180 days or less, 3 beyond; or SCTs
// delivered in the TLS handshake from 2 distinct logs; either way from
// logs of at least 2 operators. SCTs from logs the policy does not list,
// with bad signatures or from the future do not count.
func (p *Policy) checkSCTs(host string, d *Domain, cs *tls.ConnectionState, now time.Time) *SCTError {
	chain := cs.VerifiedChains[0]
	leaf := chain[0]
	e := &SCTError{Host: host, Rule: d.Name, NeedEmbedded: 2}
	if leaf.NotAfter.Sub(leaf.NotBefore) > 180*24*time.Hour {
		e.NeedEmbedded = 3
	}
	embedded := map[[sha256.Size]byte]*CTLog{}
	delivered := map[[sha256.Size]byte]*CTLog{}
	count := func(into map[[sha256.Size]byte]*CTLog, sct *signedct.SCT, verify func(*CTLog) error) {
		lg := p.ctLog(sct.LogID)
		switch {
		case lg == nil:
			e.Problems = append(e.Problems, "an SCT from log "+base64.StdEncoding.EncodeToString(sct.LogID[:])+", which the policy does not list")
		case sct.Time().After(now.Add(sctSkew)):
			e.Problems = append(e.Problems, "an SCT of "+lg.name()+" from the future")
		default:
			if err := verify(lg); err != nil {
				e.Problems = append(e.Problems, "an SCT of "+lg.name()+" that does not verify")
				return
			}
			into[lg.ID] = lg
		}
	}
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(signedct.OIDSCTList) {
			continue
		}
		scts, err := signedct.EmbeddedSCTs(ext.Value)
		if err != nil {
			e.Problems = append(e.Problems, "the certificate's SCT list: "+err.Error())
			break
		}
		tbs, err := signedct.RemoveExtension(leaf.RawTBSCertificate, signedct.OIDSCTList)
		if err != nil || len(chain) < 2 {
			e.Problems = append(e.Problems, "embedded SCTs cannot be checked without the issuer")
			break
		}
		ikh := sha256.Sum256(chain[1].RawSubjectPublicKeyInfo)
		for _, sct := range scts {
			count(embedded, sct, func(lg *CTLog) error { return sct.VerifyPrecert(lg.Key, ikh, tbs) })
		}
	}
	for _, raw := range cs.SignedCertificateTimestamps {
		sct, err := signedct.ParseSCT(raw)
		if err != nil {
			e.Problems = append(e.Problems, "an SCT of the TLS handshake: "+err.Error())
			continue
		}
		count(delivered, sct, func(lg *CTLog) error { return sct.VerifyX509(lg.Key, leaf.Raw) })
	}
	e.Embedded, e.Delivered = len(embedded), len(delivered)
	ops := func(m map[[sha256.Size]byte]*CTLog) int {
		seen := map[string]bool{}
		for _, lg := range m {
			seen[operatorKey(lg.Operator)] = true
		}
		return len(seen)
	}
	all := map[[sha256.Size]byte]*CTLog{}
	for id, lg := range embedded {
		all[id] = lg
	}
	for id, lg := range delivered {
		all[id] = lg
	}
	e.Operators = ops(all)
	if (e.Embedded >= e.NeedEmbedded && ops(embedded) >= 2) || (e.Delivered >= 2 && ops(delivered) >= 2) {
		return nil
	}
	sort.Strings(e.Problems)
	return e
}

func (l *CTLog) name() string {
	if l.Description != "" {
		return l.Description
	}
	return base64.StdEncoding.EncodeToString(l.ID[:])
}

// CheckSCTs applies the SCT rule of host's rule to a connection with
// verified chains, as the verifier does after a pin matched, without
// reporting anything; nil when the rule requires no SCTs or they suffice.
func (p *Policy) CheckSCTs(host string, cs *tls.ConnectionState, now time.Time) *SCTError {
	d := p.Match(host)
	if d == nil || !d.RequireSCTs || d.Expired(now) || len(cs.VerifiedChains) == 0 {
		return nil
	}
	return p.checkSCTs(host, d, cs, now)
}

// ctLog is the policy's log of id, nil when it lists none.
func (p *Policy) ctLog(id [sha256.Size]byte) *CTLog {
	for i := range p.ctLogs {
		if p.ctLogs[i].ID == id {
			return &p.ctLogs[i]
		}
	}
	return nil
}

// CTLogs returns a copy of the policy's CT logs.
func (p *Policy) CTLogs() []CTLog {
	out := make([]CTLog, len(p.ctLogs))
	copy(out, p.ctLogs)
	return out
}

// NewPolicyWithCTLogs is [NewPolicy] for a policy that lists CT logs, whose
// SCTs count for rules with [Domain.RequireSCTs].
func NewPolicyWithCTLogs(defaultReportURI string, logs []CTLog, domains ...Domain) (*Policy, error) {
	p := &Policy{reportURI: defaultReportURI, ctLogs: append([]CTLog(nil), logs...)}
	if err := p.init(domains); err != nil {
		return nil, err
	}
	return p, nil
}

// checkCTLogs rebuilds each log from its DER key (so that a CTLog built by
// hand cannot hold a key, ID and DER that disagree, or no operator) and
// refuses two logs with one ID.
func checkCTLogs(logs []CTLog) error {
	seen := map[[sha256.Size]byte]bool{}
	for i, l := range logs {
		d, err := NewCTLog(l.KeyDER, l.Operator, l.Description)
		if err != nil {
			return &PolicyError{Err: fmt.Errorf("ct_logs: %w", err)}
		}
		logs[i] = d
		if seen[d.ID] {
			return &PolicyError{Err: fmt.Errorf("ct_logs: log %s is listed twice", d.name())}
		}
		seen[d.ID] = true
	}
	return nil
}

func operators(logs []CTLog) int {
	seen := map[string]bool{}
	for _, l := range logs {
		seen[operatorKey(l.Operator)] = true
	}
	return len(seen)
}

// fileCTLog is a ct_logs entry of a policy file.
type fileCTLog struct {
	Key         string `yaml:"key" json:"key"`
	Operator    string `yaml:"operator" json:"operator"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
}

func (f *fileCTLog) log() (CTLog, error) {
	der, err := base64.StdEncoding.DecodeString(f.Key)
	if err != nil {
		return CTLog{}, fmt.Errorf("ct_logs: key of %q is not base64", f.Description)
	}
	return NewCTLog(der, f.Operator, f.Description)
}

package export

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/rampartsec/rampart/pin"
)

// dotnet renders a C# class whose ServerCertificateCustomValidationCallback
// applies the policy as pin.Verifier does: after platform validation, a pin
// must match some element of the built chain; most specific rule; inclusive
// expiry; report-only lets the connection through.
func (x *exporter) dotnet() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// %s\n", x.header())
	b.WriteString(dotnetPrologue)
	for _, d := range x.rules {
		var spki, cert []string
		for _, p := range d.Pins {
			if p.Kind() == pin.SPKI {
				spki = append(spki, swiftString(p.Base64()))
			} else {
				cert = append(cert, swiftString(strings.TrimPrefix(p.String(), "cert-sha256:")))
			}
		}
		expires := "null"
		if !d.Expires.IsZero() {
			e := d.ExpiresAt()
			expires = fmt.Sprintf("new DateTimeOffset(%d, %d, %d, 0, 0, 0, TimeSpan.Zero)", e.Year(), e.Month(), e.Day())
		}
		fmt.Fprintf(&b, "            [%s] = new Rule(\n", swiftString(d.Name))
		fmt.Fprintf(&b, "                IncludeSubdomains: %t,\n", d.IncludeSubdomains)
		fmt.Fprintf(&b, "                Enforce: %t,\n", d.Mode == pin.Enforce)
		fmt.Fprintf(&b, "                ExpiresAt: %s,\n", expires)
		fmt.Fprintf(&b, "                SpkiSha256: %s,\n", csArray(spki))
		fmt.Fprintf(&b, "                CertSha256: %s),\n", csArray(cert))
	}
	b.WriteString(dotnetEpilogue)
	return b.Bytes(), nil
}

func csArray(items []string) string {
	if len(items) == 0 {
		return "Array.Empty<string>()"
	}
	return "new[] { " + strings.Join(items, ", ") + " }"
}

const dotnetPrologue = `// Needs .NET 6 or later (PublicKey.ExportSubjectPublicKeyInfo, SHA256.HashData).
// Usage: using var client = new HttpClient(RampartPins.CreateHandler());

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Rampart.Pinning
{
    public static class RampartPins
    {
        // ExpiresAt is the first instant the pins no longer hold (the policy's
        // expiry date is inclusive, UTC); after it, CA validation only.
        private sealed record Rule(bool IncludeSubdomains, bool Enforce, DateTimeOffset? ExpiresAt,
            string[] SpkiSha256, string[] CertSha256);

        private static readonly Dictionary<string, Rule> Rules = new(StringComparer.Ordinal)
        {
`

const dotnetEpilogue = `        };

        // Called on every pin failure, in both modes (report-only rules let
        // the connection through). Arguments: host and the built chain.
        public static Action<string, X509Chain>? OnPinFailure { get; set; }

        public static HttpClientHandler CreateHandler() =>
            new HttpClientHandler { ServerCertificateCustomValidationCallback = Validate };

        public static bool Validate(HttpRequestMessage request, X509Certificate2? certificate,
            X509Chain? chain, SslPolicyErrors errors)
        {
            // Pinning narrows platform validation; it never replaces it.
            if (errors != SslPolicyErrors.None || chain == null || request.RequestUri == null)
                return false;
            var host = Canonical(request.RequestUri.IdnHost);
            var rule = Find(host);
            if (rule == null || (rule.ExpiresAt is { } end && DateTimeOffset.UtcNow >= end))
                return true;
            // Every element of the chain the platform built and validated,
            // the trust anchor included: never only what the server sent.
            foreach (var element in chain.ChainElements)
            {
                var cert = element.Certificate;
                var spki = Convert.ToBase64String(SHA256.HashData(cert.PublicKey.ExportSubjectPublicKeyInfo()));
                if (Array.IndexOf(rule.SpkiSha256, spki) >= 0)
                    return true;
                if (rule.CertSha256.Length > 0 &&
                    Array.IndexOf(rule.CertSha256, Convert.ToHexString(SHA256.HashData(cert.RawData)).ToLowerInvariant()) >= 0)
                    return true;
            }
            OnPinFailure?.Invoke(host, chain);
            return !rule.Enforce;
        }

        private static string Canonical(string host)
        {
            host = host.Trim('[', ']').TrimEnd('.').ToLowerInvariant();
            if (IPAddress.TryParse(host, out var ip))
            {
                if (ip.IsIPv4MappedToIPv6)
                    ip = ip.MapToIPv4();
                // ScopeId may only be set on IPv6 addresses.
                if (ip.AddressFamily == AddressFamily.InterNetworkV6)
                    ip.ScopeId = 0;
                return ip.ToString();
            }
            return host;
        }

        // The most specific rule: the host itself, else the nearest parent
        // that includes subdomains.
        private static Rule? Find(string host)
        {
            if (Rules.TryGetValue(host, out var exact))
                return exact;
            if (IPAddress.TryParse(host, out _))
                return null;
            for (var i = host.IndexOf('.'); i >= 0; i = host.IndexOf('.'))
            {
                host = host.Substring(i + 1);
                if (Rules.TryGetValue(host, out var parent) && parent.IncludeSubdomains)
                    return parent;
            }
            return null;
        }
    }
}
`

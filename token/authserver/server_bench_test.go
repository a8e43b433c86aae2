package authserver_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkTokenIssuance measures tokens issued per second through the
// token endpoint over TLS (keep-alive), client authentication included:
// 32 concurrent clients with client_secret_basic.
//
//	go test -run '^$' -bench TokenIssuance -count 10 ./token/authserver
func BenchmarkTokenIssuance(b *testing.B) {
	e := newEnv(&testing.T{})
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, nil)
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"payment.read"}}.Encode()
	tr := e.client.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("shop", key)
			resp, err := e.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

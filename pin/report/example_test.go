package report_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/rampartsec/rampart/pin/report"
)

// A collector reads reports of either format with Parse, and answers a
// refusal with the message, which names the member at fault.
func ExampleParse() {
	body, err := os.ReadFile("testdata/key/trustkit.json") // as TrustKit sends it
	if err != nil {
		panic(err)
	}
	r, format, err := report.Parse(body)
	if err != nil {
		panic(err)
	}
	mode, reason := r.Outcome()
	fmt.Println(format, r.Hostname, r.AppBundleID, mode, reason)

	_, _, err = report.Parse([]byte(`{"hostname": "api.example.com", "port": "443"}`))
	var re *report.Error
	if errors.As(err, &re) {
		fmt.Printf("400 %s (the member: %s)\n", re.Msg, re.Field)
	}
	// Output:
	// trustkit api.payments.test com.example.wallet report-only pin-mismatch
	// 400 malformed JSON: field port: want a number, got a JSON string (the member: port)
}

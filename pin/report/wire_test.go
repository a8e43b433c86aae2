package report

import (
	"reflect"
	"testing"
)

// Each member wire shadows is Report's, with Report's name and a pointer
// to its type: the format is declared once, by Report's tags.
func TestWireShadowsReport(t *testing.T) {
	rt, wt := reflect.TypeFor[Report](), reflect.TypeFor[wire]()
	for i := range wt.NumField() {
		wf := wt.Field(i)
		if wf.Anonymous {
			continue
		}
		rf, ok := rt.FieldByName(wf.Name)
		if !ok || rf.Tag.Get("json") != wf.Tag.Get("json") && rf.Tag.Get("json") != wf.Tag.Get("json")+",omitempty" ||
			wf.Type != reflect.PointerTo(rf.Type) {
			t.Errorf("wire.%s (%s %q) does not shadow a Report field", wf.Name, wf.Type, wf.Tag.Get("json"))
		}
	}
}

package discovery

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test shuts its servers down: no goroutine may outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

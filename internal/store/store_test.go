package store_test

import (
	"testing"

	"mailsync/internal/store/storetest"
)

// TestConformance runs the one suite on SQLite and PostgreSQL.
func TestConformance(t *testing.T) { storetest.Run(t) }

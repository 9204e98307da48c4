package syncer

import (
	"slices"
	"testing"

	"mailsync/internal/imapconn"
)

func TestAfter(t *testing.T) {
	r := func(lo, hi uint32) imapconn.UIDRange { return imapconn.UIDRange{Start: lo, Stop: hi} }
	tests := []struct {
		name string
		set  imapconn.UIDSet
		uid  uint32
		want imapconn.UIDSet
	}{
		{"open range", imapconn.UIDSet{r(5, 0)}, 9, imapconn.UIDSet{r(10, 0)}},
		{"below the range", imapconn.UIDSet{r(5, 0)}, 2, imapconn.UIDSet{r(5, 0)}},
		{"drops ranges at or below", imapconn.UIDSet{r(1, 3), r(7, 7), r(9, 0)}, 7, imapconn.UIDSet{r(9, 0)}},
		{"cuts into a closed range", imapconn.UIDSet{r(1, 10)}, 4, imapconn.UIDSet{r(5, 10)}},
		{"reversed range", imapconn.UIDSet{r(10, 1)}, 4, imapconn.UIDSet{r(5, 10)}},
		{"nothing left", imapconn.UIDSet{r(1, 4)}, 4, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := after(tc.set, tc.uid); !slices.Equal(got, tc.want) {
				t.Errorf("after(%v, %d) = %v, want %v", tc.set, tc.uid, got, tc.want)
			}
		})
	}
}

func TestInSet(t *testing.T) {
	set := imapconn.UIDSet{{Start: 3, Stop: 3}, {Start: 8, Stop: 5}, {Start: 20, Stop: 0}}
	for uid, want := range map[uint32]bool{1: false, 3: true, 4: false, 5: true, 8: true, 9: false, 20: true, 1 << 31: true} {
		if got := inSet(set, uid); got != want {
			t.Errorf("inSet(%v, %d) = %v, want %v", set, uid, got, want)
		}
	}
}

package imapconn

import (
	"slices"
	"testing"
)

func TestUIDSet(t *testing.T) {
	tests := []struct {
		name string
		set  UIDSet
		want string
		in   []uint32
		out  []uint32
	}{
		{"from", UIDsFrom(42), "42:*", []uint32{42, 43, 1 << 31}, []uint32{1, 41}},
		{"compacted", UIDs(9, 1, 2, 3, 5, 3, 0, 10), "1:3,5,9:10", []uint32{1, 2, 3, 5, 9, 10}, []uint32{4, 6, 8, 11}},
		{"single", UIDs(7), "7", []uint32{7}, []uint32{6, 8}},
		{"empty", UIDs(), "", nil, []uint32{1}},
		{"reversed range", UIDSet{{Start: 5, Stop: 3}}, "5:3", []uint32{3, 4, 5}, []uint32{2, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.set.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := tt.set.imap().String(); got != tt.want {
				t.Errorf("go-imap renders %q, want %q", got, tt.want)
			}
			for _, uid := range tt.in {
				if !tt.set.contains(uid) {
					t.Errorf("%s does not contain %d", tt.set, uid)
				}
			}
			for _, uid := range tt.out {
				if tt.set.contains(uid) {
					t.Errorf("%s contains %d", tt.set, uid)
				}
			}
		})
	}
}

// FuzzUIDs checks that UIDs keeps exactly its input, in sorted, disjoint, non-adjacent ranges.
func FuzzUIDs(f *testing.F) {
	f.Add([]byte{1, 2, 3, 9, 200})
	f.Add([]byte{0, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var uids []uint32
		for i := 0; i+1 < len(b); i += 2 {
			uids = append(uids, uint32(b[i])<<8|uint32(b[i+1]))
		}
		set := UIDs(uids...)
		for i, r := range set {
			if r.Start == 0 || r.Stop < r.Start {
				t.Fatalf("bad range %+v in %s", r, set)
			}
			if i > 0 && r.Start <= set[i-1].Stop+1 {
				t.Fatalf("ranges overlap or touch in %s", set)
			}
		}
		for _, uid := range uids {
			if uid != 0 && !set.contains(uid) {
				t.Fatalf("%s lost %d", set, uid)
			}
		}
		var n int
		for _, r := range set {
			n += int(r.Stop-r.Start) + 1
		}
		distinct := slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(uids), func(u uint32) bool { return u == 0 }))))
		if n != len(distinct) {
			t.Fatalf("%s holds %d UIDs, input had %d distinct", set, n, len(distinct))
		}
	})
}

package main

import "testing"

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // 0: refused
	}{
		{"100MiB", 100 << 20},
		{"16 MiB", 16 << 20},
		{"512KiB", 512 << 10},
		{"1GiB", 1 << 30},
		{"1048576", 1 << 20},
		{"10B", 10},
		{"0", 0},
		{"-1MiB", 0},
		{"1.5MiB", 0},
		{"100MB", 0}, // decimal units are not guessed at
		{"", 0},
		{"99999999999GiB", 0},
	} {
		var b byteSize
		err := b.UnmarshalText([]byte(tc.in))
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%q accepted as %d, want refused", tc.in, b)
		case tc.want != 0 && (err != nil || int64(b) != tc.want):
			t.Errorf("%q = %d, %v; want %d", tc.in, b, err, tc.want)
		}
	}
}

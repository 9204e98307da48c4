package auth

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// AvailableMemory is how many more bytes this process may use, the least of: the system's
// MemAvailable (/proc/meminfo), its cgroup's memory limit less the cgroup's usage (v2 or v1),
// and GOMEMLIMIT less what the Go runtime holds. ok is false when none of them is known (not
// Linux, no limit set).
func AvailableMemory() (avail uint64, ok bool) {
	limit := debug.SetMemoryLimit(-1)
	var goLimit uint64
	if limit > 0 && limit < math.MaxInt64 {
		goLimit = uint64(limit)
	}
	return availableMemory(os.DirFS("/"), goLimit, runtimeMemory())
}

// runtimeMemory is the memory the Go runtime holds from the system, as GOMEMLIMIT counts it.
func runtimeMemory() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// availableMemory reads the system's figures from fsys (the root file system); goLimit is
// GOMEMLIMIT (0: none) and goUsed what the runtime holds.
func availableMemory(fsys fs.FS, goLimit, goUsed uint64) (avail uint64, ok bool) {
	avail = math.MaxUint64
	take := func(v uint64) {
		avail, ok = min(avail, v), true
	}
	if v, found := memAvailable(fsys); found {
		take(v)
	}
	if limit, used, found := cgroupMemory(fsys); found {
		take(limit - min(used, limit))
	}
	if goLimit > 0 {
		take(goLimit - min(goUsed, goLimit))
	}
	if !ok {
		return 0, false
	}
	return avail, true
}

func memAvailable(fsys fs.FS) (uint64, bool) {
	data, err := fs.ReadFile(fsys, "proc/meminfo")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kib, err := strconv.ParseUint(f[1], 10, 64)
			return kib * 1024, err == nil
		}
	}
	return 0, false
}

// cgroupMemory is the memory limit and usage of this process's cgroup; found is false when there
// is no limit.
func cgroupMemory(fsys fs.FS) (limit, used uint64, found bool) {
	// cgroup v2: "0::/path" in /proc/self/cgroup; inside a container the path is usually "/"
	// and the container's own files are at the mount's root.
	var dirs []string
	if data, err := fs.ReadFile(fsys, "proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::/"); ok && rest != "" {
				dirs = append(dirs, "sys/fs/cgroup/"+strings.TrimSuffix(rest, "/"))
			}
		}
	}
	dirs = append(dirs, "sys/fs/cgroup")
	for _, d := range dirs {
		if limit, ok := readUint(fsys, d+"/memory.max"); ok {
			used, _ := readUint(fsys, d+"/memory.current")
			return limit, used, true
		}
	}
	// cgroup v1. An unlimited group reads as a huge number, which min() then ignores.
	if limit, ok := readUint(fsys, "sys/fs/cgroup/memory/memory.limit_in_bytes"); ok && limit < 1<<60 {
		used, _ := readUint(fsys, "sys/fs/cgroup/memory/memory.usage_in_bytes")
		return limit, used, true
	}
	return 0, 0, false
}

// readUint reads a file holding one number; "max" (no limit) is not one.
func readUint(fsys fs.FS, name string) (uint64, bool) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return v, err == nil
}

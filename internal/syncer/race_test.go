//go:build race

package syncer_test

// memoryFactor scales memory limits: the race detector multiplies a process's memory by 5-10.
const memoryFactor = 8

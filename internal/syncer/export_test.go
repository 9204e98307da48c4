package syncer

// FromExcept is fromExcept, for the tests.
var FromExcept = fromExcept

package fcm

// SDKVersion exposes sdkVersion to the package's external tests.
var SDKVersion = sdkVersion

// Package scenario holds helpers shared by the Go (amqp091-go) interop scenarios.
//
// A scenario is a main package in go/<name>/, run as `<name> AMQP_URL`; it exits
// 0 on success and non-zero with a message on stderr on any failure.
package scenario

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Fail reports a failure and exits non-zero.
func Fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// Check fails the scenario unless cond holds.
func Check(cond bool, format string, args ...interface{}) {
	if !cond {
		Fail(format, args...)
	}
}

// Start arms a watchdog that kills the scenario after timeout and returns the broker URL.
func Start(timeout time.Duration) string {
	time.AfterFunc(timeout, func() {
		fmt.Fprintf(os.Stderr, "FAIL: timed out after %s\n", timeout)
		os.Exit(3)
	})
	if len(os.Args) > 1 {
		return os.Args[1]
	}
	if url := os.Getenv("AMQP_URL"); url != "" {
		return url
	}
	fmt.Fprintf(os.Stderr, "usage: %s AMQP_URL\n", os.Args[0])
	os.Exit(2)
	return ""
}

// Dial connects with a 10 s connect/handshake timeout.
func Dial(url string) *amqp.Connection {
	conn, err := amqp.DialConfig(url, amqp.Config{
		Dial:      amqp.DefaultDial(10 * time.Second),
		Heartbeat: 10 * time.Second,
		Locale:    "en_US",
	})
	if err != nil {
		Fail("connect failed: %v", err)
	}
	return conn
}

var stringProperties = []string{"product", "version", "platform", "copyright", "information"}

// CheckServerProperties checks the server-properties table of connection.start and prints it.
func CheckServerProperties(props amqp.Table) {
	Check(props != nil, "no server properties")
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range stringProperties {
		v, ok := props[key]
		Check(ok, "server property %q missing (got %v)", key, keys)
		s, ok := v.(string)
		Check(ok, "server property %q is %T %#v, expected a string", key, v, v)
		fmt.Printf("server %s: %s\n", key, s)
	}
	v, ok := props["capabilities"]
	Check(ok, "server property \"capabilities\" missing (got %v)", keys)
	caps, ok := v.(amqp.Table)
	Check(ok, "server property \"capabilities\" is %T %#v, expected a table", v, v)
	capKeys := make([]string, 0, len(caps))
	for k := range caps {
		capKeys = append(capKeys, k)
	}
	sort.Strings(capKeys)
	parts := make([]string, 0, len(caps))
	for _, k := range capKeys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, caps[k]))
	}
	fmt.Printf("server capabilities: %s\n", strings.Join(parts, ", "))
}

// Package scenario holds helpers shared by the Go (amqp091-go) interop scenarios.
//
// A scenario is a main package in go/<name>/, run as `<name> AMQP_URL`; it exits
// 0 on success and non-zero with a message on stderr on any failure.
package scenario

import (
	"crypto/rand"
	"encoding/hex"
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

// UniqueName returns a name no other run (parallel or earlier) uses:
// interop.<scenario>.go.<random>[.<suffix>].
func UniqueName(scenario string, suffix ...string) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		Fail("crypto/rand: %v", err)
	}
	name := fmt.Sprintf("interop.%s.go.%s", scenario, hex.EncodeToString(b))
	for _, s := range suffix {
		name += "." + s
	}
	return name
}

// Must fails the scenario if err is not nil; what describes the operation.
func Must(err error, what string, args ...interface{}) {
	if err != nil {
		Fail("%s failed: %v", fmt.Sprintf(what, args...), err)
	}
}

// Channel opens a channel or fails.
func Channel(conn *amqp.Connection) *amqp.Channel {
	ch, err := conn.Channel()
	Must(err, "opening a channel")
	return ch
}

// Publish publishes msg or fails.
func Publish(ch *amqp.Channel, exchange, key string, mandatory bool, msg amqp.Publishing) {
	Must(ch.Publish(exchange, key, mandatory, false, msg), "publishing to exchange %q with routing key %q", exchange, key)
}

// Consume starts a consumer or fails.
func Consume(ch *amqp.Channel, queue, tag string, autoAck bool) <-chan amqp.Delivery {
	d, err := ch.Consume(queue, tag, autoAck, false, false, false, nil)
	Must(err, "basic.consume on %q", queue)
	return d
}

// Receive returns the next delivery, failing after timeout or if the consumer ends.
func Receive(deliveries <-chan amqp.Delivery, timeout time.Duration, what string, args ...interface{}) amqp.Delivery {
	select {
	case d, ok := <-deliveries:
		Check(ok, "consumer ended (channel closed or consumer cancelled) while waiting for %s", fmt.Sprintf(what, args...))
		return d
	case <-time.After(timeout):
		Fail("timed out after %s waiting for %s", timeout, fmt.Sprintf(what, args...))
	}
	return amqp.Delivery{}
}

// NoMore fails if a delivery arrives within wait.
func NoMore(deliveries <-chan amqp.Delivery, wait time.Duration, what string, args ...interface{}) {
	select {
	case d, ok := <-deliveries:
		if ok {
			Fail("unexpected delivery %q (%s)", d.Body, fmt.Sprintf(what, args...))
		}
	case <-time.After(wait):
	}
}

// WaitFor polls cond every 10 ms until it holds, failing after timeout.
func WaitFor(cond func() bool, timeout time.Duration, what func() string) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			Fail("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

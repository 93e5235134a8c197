// headers_routing: a headers exchange with one server-named queue per binding; messages with
// various header tables are published and each queue must get exactly the messages the table
// says (in publish order). Covers x-match all (also the default when x-match is absent) and
// any, an empty binding (all -> matches everything, any -> nothing), binding keys starting
// with "x-" (ignored in all/any), case-sensitive string values, integer values, and a message
// with no headers property at all.
package main

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

// The body of each message is its name; nil headers = no headers property.
var messages = []struct {
	name    string
	headers amqp.Table
}{
	{"m1", amqp.Table{"format": "pdf", "type": "report"}},
	{"m2", amqp.Table{"format": "pdf", "type": "log"}},
	{"m3", amqp.Table{"format": "zip", "type": "report"}},
	{"m4", amqp.Table{"format": "zip"}},
	{"m5", nil},
	{"m6", amqp.Table{"format": "pdf", "type": "report", "extra": "yes"}},
	{"m7", amqp.Table{"count": int32(5)}},
	{"m8", amqp.Table{"count": int32(6), "format": "zip"}},
	{"m9", amqp.Table{"type": "report"}},
	{"m10", amqp.Table{"format": "PDF"}},
	{"m11", amqp.Table{"x-tag": "a"}},
}

var all = []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"}

// One queue: its binding arguments and the messages it must get.
var table = []struct {
	args amqp.Table
	want []string
}{
	{amqp.Table{"x-match": "all", "format": "pdf", "type": "report"}, []string{"m1", "m6"}},
	{amqp.Table{"x-match": "any", "format": "pdf", "type": "report"}, []string{"m1", "m2", "m3", "m6", "m9"}},
	{amqp.Table{"format": "zip"}, []string{"m3", "m4", "m8"}},
	{amqp.Table{"x-match": "all", "count": int32(5)}, []string{"m7"}},
	{amqp.Table{"x-match": "all"}, all},
	{amqp.Table{"x-match": "any"}, []string{}},
	{amqp.Table{"x-match": "any", "x-tag": "a", "format": "zip"}, []string{"m3", "m4", "m8"}},
}

var endBinding = amqp.Table{"x-match": "all", "end": "yes"} // every queue is also bound with this; published last

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	exchange := s.UniqueName("headers_routing")
	s.Must(ch.ExchangeDeclare(exchange, "headers", false, false, false, false, nil), "exchange.declare %q", exchange)

	names := []string{}
	consumers := []<-chan amqp.Delivery{}
	for _, row := range table {
		q, err := ch.QueueDeclare("", false, false, true, false, nil)
		s.Must(err, "queue.declare of a server-named queue")
		s.Must(ch.QueueBind(q.Name, "", exchange, false, row.args), "queue.bind %v", row.args)
		s.Must(ch.QueueBind(q.Name, "", exchange, false, endBinding), "queue.bind %v", endBinding)
		names = append(names, q.Name)
		consumers = append(consumers, s.Consume(ch, q.Name, "", true))
	}

	for _, m := range messages {
		s.Publish(ch, exchange, "ignored", false, amqp.Publishing{Headers: m.headers, Body: []byte(m.name)})
	}
	s.Publish(ch, exchange, "ignored", false, amqp.Publishing{Headers: amqp.Table{"end": "yes"}, Body: []byte("end")})

	failures := []string{}
	for i, row := range table {
		have := []string{}
		for {
			d := s.Receive(consumers[i], 10*time.Second, "the \"end\" message in the queue bound with %v (got %q)", row.args, have)
			if string(d.Body) == "end" {
				break
			}
			have = append(have, string(d.Body))
		}
		if fmt.Sprintf("%q", have) != fmt.Sprintf("%q", row.want) {
			failures = append(failures, fmt.Sprintf("bound with %v: got %q, expected %q", row.args, have, row.want))
		} else {
			fmt.Printf("bound with %v: %q\n", row.args, have)
		}
	}
	s.Check(len(failures) == 0, "wrong routing:\n  %s", strings.Join(failures, "\n  "))

	for _, n := range names {
		_, err := ch.QueueDelete(n, false, false, false)
		s.Must(err, "queue.delete %q", n)
	}
	s.Must(ch.ExchangeDelete(exchange, false, false), "exchange.delete %q", exchange)
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}

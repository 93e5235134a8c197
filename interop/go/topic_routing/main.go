// topic_routing: a topic exchange with one server-named queue per binding key; a message is
// published for each routing key of a table, and each queue must get exactly the routing keys
// the table says (in publish order, once each even when several of its bindings match).
//
// Words are split on "."; "*" matches exactly one word and "#" zero or more words; an empty
// word (as in "a..c", "a." or ".") is a word like any other, and the empty routing key has no
// words at all (so "#" and the empty binding key match it, "*" does not).
package main

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

var routingKeys = []string{"a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "", "b", "x.b.y.z", "c",
	"a.b.b.c", "a.", ".", "x.b"}

// One queue: its binding keys and the routing keys it must get, in publish order.
var table = []struct{ keys, want []string }{
	{[]string{"a.b.c"}, []string{"a.b.c"}},
	{[]string{"a.*.c"}, []string{"a.b.c", "a.x.c", "a..c"}},
	{[]string{"a.#"}, []string{"a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "a.b.b.c", "a."}},
	{[]string{"#"}, routingKeys},
	{[]string{"*"}, []string{"a", "b", "c"}},
	{[]string{"*.*"}, []string{"a.b", "a.c", "a.", ".", "x.b"}},
	{[]string{"a.#.c"}, []string{"a.b.c", "a.x.c", "a.c", "a..c", "a.b.b.c"}},
	{[]string{"#.c"}, []string{"a.b.c", "a.x.c", "a.c", "a..c", "c", "a.b.b.c"}},
	{[]string{"a..c"}, []string{"a..c"}},
	{[]string{""}, []string{""}},
	{[]string{"a.*"}, []string{"a.b", "a.c", "a."}},
	{[]string{"*.b.#"}, []string{"a.b.c", "a.b", "a.b.c.d", "x.b.y.z", "a.b.b.c", "x.b"}},
	{[]string{"a.*.#"}, []string{"a.b.c", "a.x.c", "a.b", "a.b.c.d", "a.c", "a..c", "a.b.b.c", "a."}},
	{[]string{"a.#", "#.c"}, []string{"a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "c", "a.b.b.c", "a."}},
}

const end = "end.of.test" // every queue is also bound with this key; published last

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	exchange := s.UniqueName("topic_routing")
	s.Must(ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil), "exchange.declare %q", exchange)

	names := []string{}
	consumers := []<-chan amqp.Delivery{}
	for _, row := range table {
		q, err := ch.QueueDeclare("", false, false, true, false, nil)
		s.Must(err, "queue.declare of a server-named queue")
		for _, key := range append(append([]string{}, row.keys...), end) {
			s.Must(ch.QueueBind(q.Name, key, exchange, false, nil), "queue.bind %q", key)
		}
		names = append(names, q.Name)
		consumers = append(consumers, s.Consume(ch, q.Name, "", true))
	}

	for _, key := range append(append([]string{}, routingKeys...), end) {
		s.Publish(ch, exchange, key, false, amqp.Publishing{Body: []byte(key)})
	}

	failures := []string{}
	for i, row := range table {
		have := []string{}
		for {
			d := s.Receive(consumers[i], 10*time.Second, "the %q message in the queue bound with %q (got %q)", end, row.keys, have)
			if string(d.Body) == end {
				break
			}
			have = append(have, string(d.Body))
		}
		if fmt.Sprintf("%q", have) != fmt.Sprintf("%q", row.want) {
			failures = append(failures, fmt.Sprintf("bound with %q: got %q, expected %q", row.keys, have, row.want))
		} else {
			fmt.Printf("bound with %q: %q\n", row.keys, have)
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

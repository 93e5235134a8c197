// pubsub_fanout: a fanout exchange with three server-named exclusive queues bound to it
// (with different binding keys, which fanout ignores); every queue gets every message, once,
// in publish order.
package main

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const (
	queues   = 3
	messages = 10
)

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	exchange := s.UniqueName("pubsub_fanout")
	s.Must(ch.ExchangeDeclare(exchange, "fanout", false, false, false, false, nil), "exchange.declare %q", exchange)

	names := []string{}
	consumers := []<-chan amqp.Delivery{}
	for i := 0; i < queues; i++ {
		q, err := ch.QueueDeclare("", false, false, true, false, nil)
		s.Must(err, "queue.declare of a server-named queue")
		s.Check(q.Name != "", "queue.declare-ok of a server-named queue has an empty name")
		for _, n := range names {
			s.Check(n != q.Name, "server-named queue %q handed out twice", q.Name)
		}
		names = append(names, q.Name)
		s.Must(ch.QueueBind(q.Name, fmt.Sprintf("ignored.%d", i), exchange, false, nil), "queue.bind %q", q.Name)
		consumers = append(consumers, s.Consume(ch, q.Name, "", true))
	}
	fmt.Printf("server-named queues: %q\n", names)

	expected := []string{}
	for i := 1; i <= messages; i++ {
		expected = append(expected, fmt.Sprintf("news %d", i))
	}
	for i, body := range expected {
		s.Publish(ch, exchange, fmt.Sprintf("any.key.%d", i), false, amqp.Publishing{Body: []byte(body)})
	}
	for qi, deliveries := range consumers {
		for _, want := range expected {
			d := s.Receive(deliveries, 10*time.Second, "%q in queue %s", want, names[qi])
			s.Check(string(d.Body) == want, "queue %s got %q, expected %q (messages in order %q)", names[qi], d.Body, want, expected)
		}
	}
	for qi, deliveries := range consumers {
		s.NoMore(deliveries, 200*time.Millisecond, "queue %s already got all %d messages", names[qi], messages)
	}

	for _, n := range names {
		_, err := ch.QueueDelete(n, false, false, false)
		s.Must(err, "queue.delete %q", n)
	}
	s.Must(ch.ExchangeDelete(exchange, false, false), "exchange.delete %q", exchange)
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}

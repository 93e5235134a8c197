// nack_requeue_order: messages 1..5 are fetched with basic.get (no ack; get-ok's
// message_count counts down 4..0), then nacked with requeue=true one by one, message 3 first
// and the others in a scrambled order. They come back (to a consumer) in their original order
// 1..5, each with redelivered=true, and once acked the queue is empty.
package main

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const messages = 5

var nackOrder = []int{3, 5, 1, 4, 2}

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	s.Must(err, "queue.declare")
	for i := 1; i <= messages; i++ {
		s.Publish(ch, "", q.Name, false, amqp.Publishing{Body: []byte(fmt.Sprintf("msg %d", i))})
	}

	tags := map[int]uint64{}
	for i := 1; i <= messages; i++ {
		deadline := time.Now().Add(5 * time.Second)
		var d amqp.Delivery
		var ok bool
		for {
			d, ok, err = ch.Get(q.Name, false)
			s.Must(err, "basic.get %d", i)
			if ok || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.Check(ok, "basic.get %d returned get-empty", i)
		want := fmt.Sprintf("msg %d", i)
		s.Check(string(d.Body) == want, "basic.get %d returned %q, expected %q", i, d.Body, want)
		s.Check(!d.Redelivered, "%q has redelivered=true on first delivery", d.Body)
		s.Check(d.MessageCount == uint32(messages-i), "get-ok for %q has message_count %d, expected %d", d.Body, d.MessageCount, messages-i)
		if i > 1 {
			s.Check(d.DeliveryTag > tags[i-1], "delivery tags are not increasing: %d after %d", d.DeliveryTag, tags[i-1])
		}
		tags[i] = d.DeliveryTag
	}
	_, ok, err := ch.Get(q.Name, false)
	s.Must(err, "basic.get")
	s.Check(!ok, "basic.get returned a sixth message")

	for _, i := range nackOrder {
		s.Must(ch.Nack(tags[i], false, true), "basic.nack of msg %d", i)
	}
	fmt.Printf("nacked (requeue) in order %v\n", nackOrder)

	deliveries := s.Consume(ch, q.Name, "redeliveries", false)
	got := []string{}
	for i := 1; i <= messages; i++ {
		d := s.Receive(deliveries, 10*time.Second, "redelivery %d (got %q)", i, got)
		got = append(got, string(d.Body))
		want := fmt.Sprintf("msg %d", i)
		s.Check(string(d.Body) == want, "redelivery %d is %q, expected %q (requeued messages must keep their original order)", i, d.Body, want)
		s.Check(d.Redelivered, "redelivered %q has redelivered=false", d.Body)
		s.Must(d.Ack(false), "basic.ack")
	}
	s.NoMore(deliveries, 200*time.Millisecond, "all %d messages were redelivered and acked", messages)
	fmt.Printf("redelivered in order: %q\n", got)

	s.Must(ch.Cancel("redeliveries", false), "basic.cancel")
	q, err = ch.QueueInspect(q.Name)
	s.Must(err, "passive queue.declare")
	s.Check(q.Messages == 0, "queue still has %d messages ready", q.Messages)
	_, err = ch.QueueDelete(q.Name, false, false, false)
	s.Must(err, "queue.delete")
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}

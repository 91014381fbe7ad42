"""Sensors: Kafka topics drive the streaming Bronze assets (see kafka.py)."""

from lakehouse.sensors.kafka import SENSORS, clickstream_sensor, support_tickets_sensor

__all__ = ["SENSORS", "clickstream_sensor", "support_tickets_sensor"]

"""Declarative automation for every asset outside the streaming ones (which have their own sensor)."""

from lakehouse import policies
from lakehouse.defs.sensors import kafka

automation_sensor = policies.automation_sensor(kafka.streaming_automation_sensor.asset_selection)

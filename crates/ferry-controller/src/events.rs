//! Reading core/v1 Events, whoever wrote them: a recorder of the old API sets `lastTimestamp`,
//! one of events.k8s.io/v1 (the scheduler, kube-runtime's `Recorder`) sets `eventTime` and,
//! for a repeated event, `series.lastObservedTime`, and leaves `lastTimestamp` empty.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

/// When the event last happened.
pub fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The latest Warning among `events` about the object of `kind` named `name`.
pub fn latest_warning<'a>(events: &'a [Event], kind: &str, name: &str) -> Option<&'a Event> {
    events
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.type_.as_deref() == Some("Warning")
        })
        .max_by_key(|e| event_time(e))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EventSeries, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn warning(reason: &str, name: &str) -> Event {
        Event {
            type_: Some("Warning".into()),
            reason: Some(reason.into()),
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_time_is_read_from_whichever_api_wrote_the_event() {
        let mut old = warning("A", "p");
        old.first_timestamp = Some(Time(at("2026-01-01T00:00:00Z")));
        old.last_timestamp = Some(Time(at("2026-01-01T00:05:00Z")));
        assert_eq!(event_time(&old), Some(at("2026-01-01T00:05:00Z")));

        let mut new = warning("B", "p");
        new.event_time = Some(MicroTime(at("2026-01-01T00:01:00Z")));
        assert_eq!(event_time(&new), Some(at("2026-01-01T00:01:00Z")));
        new.series = Some(EventSeries {
            count: Some(3),
            last_observed_time: Some(MicroTime(at("2026-01-01T00:09:00Z"))),
        });
        assert_eq!(event_time(&new), Some(at("2026-01-01T00:09:00Z")));

        assert_eq!(event_time(&warning("C", "p")), None);
    }

    #[test]
    fn the_latest_warning_about_the_object_wins_across_both_apis() {
        let mut old = warning("FailedMount", "p");
        old.last_timestamp = Some(Time(at("2026-01-01T00:05:00Z")));
        // Later, from events.k8s.io/v1: no lastTimestamp at all.
        let mut new = warning("FailedScheduling", "p");
        new.event_time = Some(MicroTime(at("2026-01-01T00:06:00Z")));
        let mut other = warning("BackOff", "q");
        other.event_time = Some(MicroTime(at("2026-01-01T00:07:00Z")));
        let mut normal = warning("Scheduled", "p");
        normal.type_ = Some("Normal".into());
        normal.event_time = Some(MicroTime(at("2026-01-01T00:08:00Z")));
        for events in [
            vec![new.clone(), old.clone(), other.clone(), normal.clone()],
            vec![normal, other, old, new],
        ] {
            let latest = latest_warning(&events, "Pod", "p").unwrap();
            assert_eq!(latest.reason.as_deref(), Some("FailedScheduling"));
        }
        assert!(latest_warning(&[], "Pod", "p").is_none());
    }
}

//! The languages of the review desk and of exported reports: one Fluent catalogue per language
//! (`locales/<tag>.ftl`, compiled into the binary), the choice of language from a user's
//! setting or the browser's `Accept-Language`, and dates in the reader's locale and time zone.
//! A message missing from a catalogue falls back to English; the catalogue tests make sure
//! English has every message the desk and the report ask for.

use callwarden_domain::report::Words;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue, concurrent::FluentBundle};
use std::{fmt, str::FromStr, sync::Arc};

/// The languages the desk speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Pl,
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Pl, Lang::ZhCn];

    /// The BCP 47 tag, as in `<html lang>` and the catalogue's file name.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Pl => "pl",
            Self::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the language picker.
    pub fn own_name(&self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Pl => "Polski",
            Self::ZhCn => "简体中文",
        }
    }

    fn source(&self) -> &'static str {
        match self {
            Self::En => include_str!("../locales/en.ftl"),
            Self::Pl => include_str!("../locales/pl.ftl"),
            Self::ZhCn => include_str!("../locales/zh-CN.ftl"),
        }
    }

    fn chrono_locale(&self) -> chrono::Locale {
        match self {
            Self::En => chrono::Locale::en_GB,
            Self::Pl => chrono::Locale::pl_PL,
            Self::ZhCn => chrono::Locale::zh_CN,
        }
    }

    /// The best of our languages for an `Accept-Language` header, by its q-values; English
    /// when it names none of them. Chinese means Simplified Chinese unless the header names a
    /// Traditional script or region (zh-TW, zh-HK, zh-Hant), which we do not have.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut ranges: Vec<(f32, usize, &str)> = accept_language
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut fields = part.split(';');
                let tag = fields.next()?.trim();
                let q = fields
                    .find_map(|f| f.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (!tag.is_empty() && q > 0.0).then_some((q, i, tag))
            })
            .collect();
        // Highest q first; the header's order breaks ties.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .iter()
            .find_map(|(_, _, tag)| Self::for_tag(tag))
            .unwrap_or(Lang::En)
    }

    fn for_tag(tag: &str) -> Option<Lang> {
        let tag = tag.to_ascii_lowercase();
        let mut parts = tag.split(['-', '_']);
        match parts.next()? {
            "en" => Some(Self::En),
            "pl" => Some(Self::Pl),
            "zh" => {
                let traditional = parts.any(|p| matches!(p, "hant" | "tw" | "hk" | "mo"));
                (!traditional).then_some(Self::ZhCn)
            }
            _ => None,
        }
    }
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not a language the desk speaks (en, pl, zh-CN)"))
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// An IANA time zone name, parsed.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone, e.g. \"Europe/Warsaw\""))
}

/// An argument of a message: text is shown as it is, numbers choose plural forms.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Number(f64),
}

/// Every language's catalogue, loaded once.
pub struct Catalogues {
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

impl Catalogues {
    /// Parses the catalogues compiled into the binary. They are part of the build, so one that
    /// does not parse is a defect the tests catch, not a runtime condition.
    pub fn load() -> Arc<Self> {
        Arc::new(Self::from_sources(
            Lang::ALL.into_iter().map(|l| (l, l.source())).collect(),
        ))
    }

    fn from_sources(sources: Vec<(Lang, &str)>) -> Self {
        let bundles = sources
            .into_iter()
            .map(|(lang, source)| {
                let resource =
                    FluentResource::try_new(source.to_owned()).unwrap_or_else(|(_, errors)| {
                        panic!("locales/{}.ftl does not parse: {errors:?}", lang.tag())
                    });
                let id: unic_langid::LanguageIdentifier =
                    lang.tag().parse().expect("our tags are valid language ids");
                let mut bundle = FluentBundle::new_concurrent(vec![id]);
                // Unicode isolation marks would show up in Markdown and in copied text.
                bundle.set_use_isolating(false);
                bundle
                    .add_resource(resource)
                    .expect("a catalogue defines each message once");
                (lang, bundle)
            })
            .collect();
        Self { bundles }
    }

    fn bundle(&self, lang: Lang) -> &FluentBundle<FluentResource> {
        &self
            .bundles
            .iter()
            .find(|(l, _)| *l == lang)
            .expect("every language is loaded")
            .1
    }

    /// The message in `lang`, else in English. Only a message English lacks too comes out
    /// empty (logged): the catalogue tests keep that from shipping.
    pub fn message(&self, lang: Lang, id: &str, args: &[(&str, Arg)]) -> String {
        let fluent_args = (!args.is_empty()).then(|| {
            let mut a = FluentArgs::new();
            for (k, v) in args {
                match v {
                    Arg::Text(s) => a.set(*k, FluentValue::from(s.clone())),
                    Arg::Number(n) => a.set(*k, FluentValue::from(*n)),
                }
            }
            a
        });
        for lang in [lang, Lang::En] {
            let bundle = self.bundle(lang);
            if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, fluent_args.as_ref(), &mut errors);
                if !errors.is_empty() {
                    tracing::warn!(
                        lang = lang.tag(),
                        id,
                        ?errors,
                        "message formatted with errors"
                    );
                }
                return text.into_owned();
            }
        }
        tracing::error!(id, "message missing from every catalogue");
        String::new()
    }

    /// Whether `lang`'s own catalogue has the message (no fallback).
    pub fn has(&self, lang: Lang, id: &str) -> bool {
        self.bundle(lang).has_message(id)
    }

    /// The message ids of a language's catalogue.
    #[cfg(test)]
    fn ids(lang: Lang) -> Vec<String> {
        let resource = FluentResource::try_new(lang.source().to_owned()).expect("catalogue parses");
        resource
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect()
    }
}

/// One reader's language and time zone: what every page and report is rendered with.
#[derive(Clone)]
pub struct Speaker {
    catalogues: Arc<Catalogues>,
    pub lang: Lang,
    pub zone: Tz,
}

impl Speaker {
    pub fn new(catalogues: Arc<Catalogues>, lang: Lang, zone: Tz) -> Self {
        Self {
            catalogues,
            lang,
            zone,
        }
    }

    /// A message without arguments.
    pub fn t(&self, id: &str) -> String {
        self.catalogues.message(self.lang, id, &[])
    }

    pub fn t_with(&self, id: &str, args: &[(&str, Arg)]) -> String {
        self.catalogues.message(self.lang, id, args)
    }

    /// A date and time in the reader's zone, as their language writes it (the pattern is the
    /// catalogue's `format-datetime`).
    pub fn datetime(&self, t: DateTime<Utc>) -> String {
        self.formatted(t, "format-datetime")
    }

    /// A day, as the reader's language writes it (`format-date`).
    pub fn date(&self, t: DateTime<Utc>) -> String {
        self.formatted(t, "format-date")
    }

    fn formatted(&self, t: DateTime<Utc>, pattern_id: &str) -> String {
        let pattern = self.t(pattern_id);
        t.with_timezone(&self.zone)
            .format_localized(&pattern, self.lang.chrono_locale())
            .to_string()
    }

    /// A length of time, rounded to what a person reads at a glance: seconds, minutes, hours
    /// and minutes, or days and hours.
    pub fn duration(&self, seconds: i64) -> String {
        let seconds = seconds.max(0);
        if seconds < 60 {
            return self.t_with("duration-seconds", &[("s", Arg::Number(seconds as f64))]);
        }
        let minutes = seconds / 60;
        let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
        let n = |v: i64| Arg::Number(v as f64);
        if d > 0 {
            self.t_with("duration-days", &[("d", n(d)), ("h", n(h))])
        } else if h > 0 {
            self.t_with("duration-hours", &[("h", n(h)), ("m", n(m))])
        } else {
            self.t_with("duration-minutes", &[("m", n(m))])
        }
    }

    /// The name of a code (`category`, `severity`, `status`, ...): `<group>-<code>` in the
    /// catalogue. A code no catalogue names (one newer than the catalogues) shows as itself.
    pub fn name(&self, group: &str, code: &str) -> String {
        let id = format!("{group}-{code}");
        if self.catalogues.has(Lang::En, &id) {
            self.t(&id)
        } else {
            code.to_owned()
        }
    }
}

impl Words for Speaker {
    fn say(&self, id: &str, args: &[(&str, String)]) -> String {
        let args: Vec<(&str, Arg)> = args
            .iter()
            .map(|(k, v)| (*k, Arg::Text(v.clone())))
            .collect();
        self.t_with(id, &args)
    }

    fn name(&self, group: &str, code: &str) -> String {
        Speaker::name(self, group, code)
    }

    fn time(&self, t: DateTime<Utc>) -> String {
        self.datetime(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn speaker(lang: Lang, zone: &str) -> Speaker {
        Speaker::new(Catalogues::load(), lang, time_zone(zone).unwrap())
    }

    #[test]
    fn every_language_has_exactly_the_english_messages() {
        let en = Catalogues::ids(Lang::En);
        assert!(en.len() > 200, "the English catalogue is the reference");
        for lang in [Lang::Pl, Lang::ZhCn] {
            let ids = Catalogues::ids(lang);
            let missing: Vec<_> = en.iter().filter(|id| !ids.contains(id)).collect();
            let extra: Vec<_> = ids.iter().filter(|id| !en.contains(id)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{lang}: missing {missing:?}, not in English {extra:?}"
            );
        }
    }

    /// Message ids quoted in a source: `t("id"`, `t('id'`, `t_with("id"`, `say("id"` and
    /// the report's `"report-…"` literals.
    fn quoted_ids(source: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for opener in ["t(\"", "t('", "t_with(\"", "say(\""] {
            for (at, _) in source.match_indices(opener) {
                let word_start = source[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
                if !word_start {
                    continue;
                }
                let rest = &source[at + opener.len()..];
                let id: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                let closed = rest[id.len()..].starts_with(['"', '\'']);
                if !id.is_empty() && closed {
                    ids.push(id);
                }
            }
        }
        for (at, _) in source.match_indices("\"report-") {
            let id: String = source[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            ids.push(id);
        }
        ids
    }

    #[test]
    fn english_has_every_message_the_desk_and_the_report_ask_for() {
        let sources = [
            include_str!("../templates/base.html"),
            include_str!("../templates/sign_in.html"),
            include_str!("../templates/error.html"),
            include_str!("../templates/queue.html"),
            include_str!("../templates/queue_table.html"),
            include_str!("../templates/incident.html"),
            include_str!("../templates/blocklist.html"),
            include_str!("../templates/dashboard.html"),
            include_str!("../templates/settings.html"),
            include_str!("desk/mod.rs"),
            include_str!("desk/session.rs"),
            include_str!("desk/pages.rs"),
            include_str!("desk/chart.rs"),
            include_str!("../../callwarden-domain/src/report.rs"),
        ];
        let catalogues = Catalogues::load();
        let ids: Vec<String> = sources.iter().flat_map(|s| quoted_ids(s)).collect();
        assert!(
            ids.len() > 150,
            "the scan finds the desk's messages ({})",
            ids.len()
        );
        let missing: Vec<_> = ids
            .iter()
            .filter(|id| !catalogues.has(Lang::En, id))
            .collect();
        assert!(missing.is_empty(), "not in en.ftl: {missing:?}");
        // Ids the pages build from codes.
        use callwarden_domain::{
            incident::{Category, Severity},
            report::ACTION_KINDS,
            review::IncidentStatus,
        };
        let mut built: Vec<String> = Vec::new();
        built.extend(
            Category::ALL
                .iter()
                .map(|c| format!("category-{}", c.as_str())),
        );
        built.extend(
            Severity::ALL
                .iter()
                .map(|c| format!("severity-{}", c.as_str())),
        );
        built.extend(
            IncidentStatus::ALL
                .iter()
                .map(|c| format!("status-{}", c.as_str())),
        );
        built.extend(ACTION_KINDS.iter().map(|k| format!("event-{k}")));
        built.extend(
            crate::desk::DONE_NOTICES
                .iter()
                .map(|d| format!("what-{d}")),
        );
        for scope in ["global", "line", "operator"] {
            built.push(format!("scope-{scope}"));
        }
        built.extend(
            crate::auth::Denial::ALL
                .iter()
                .map(|d| format!("denial-{}", d.as_str())),
        );
        built.extend(
            callwarden_domain::decision::Reason::ALL
                .iter()
                .map(|r| format!("reason-{}", r.as_str())),
        );
        for decision in ["allow", "allow_with_notice", "reject"] {
            built.push(format!("decision-{decision}"));
        }
        let missing: Vec<_> = built
            .iter()
            .filter(|id| !catalogues.has(Lang::En, id))
            .collect();
        assert!(missing.is_empty(), "not in en.ftl: {missing:?}");
    }

    #[test]
    fn a_missing_translation_falls_back_to_english_never_to_the_key() {
        let c = Catalogues::from_sources(vec![
            (
                Lang::En,
                "greeting = Hello { $who }\nonly-english = Only in English\n",
            ),
            (Lang::Pl, "greeting = Witaj { $who }\n"),
            (Lang::ZhCn, ""),
        ]);
        let who = [("who", Arg::Text("Ala".into()))];
        assert_eq!(c.message(Lang::Pl, "greeting", &who), "Witaj Ala");
        assert_eq!(c.message(Lang::Pl, "only-english", &[]), "Only in English");
        assert_eq!(c.message(Lang::ZhCn, "greeting", &who), "Hello Ala");
        assert_eq!(
            c.message(Lang::Pl, "nowhere", &[]),
            "",
            "never the key itself"
        );
    }

    #[test]
    fn the_browser_language_is_negotiated_by_quality() {
        for (header, lang) in [
            ("pl-PL,pl;q=0.9,en-US;q=0.8,en;q=0.7", Lang::Pl),
            ("zh-CN,zh;q=0.9", Lang::ZhCn),
            ("zh-Hans-CN", Lang::ZhCn),
            ("zh-TW,zh-Hant;q=0.9", Lang::En),
            ("zh-TW, pl;q=0.5", Lang::Pl),
            ("fr-FR, de;q=0.8", Lang::En),
            ("en;q=0.4, pl;q=0.9", Lang::Pl),
            ("pl;q=0, en", Lang::En),
            ("", Lang::En),
            ("*", Lang::En),
        ] {
            assert_eq!(Lang::negotiate(header), lang, "{header:?}");
        }
    }

    #[test]
    fn dates_follow_the_language_and_the_time_zone() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 8, 5, 0).unwrap();
        assert_eq!(speaker(Lang::En, "UTC").datetime(t), "22 Nov 2026, 08:05");
        assert_eq!(
            speaker(Lang::Pl, "Europe/Warsaw").datetime(t),
            "22.11.2026, 09:05"
        );
        assert_eq!(
            speaker(Lang::ZhCn, "Asia/Shanghai").datetime(t),
            "2026年11月22日 16:05"
        );
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn polish_counts_take_their_plural_forms() {
        let s = speaker(Lang::Pl, "UTC");
        let period = |n: f64| {
            s.t_with(
                "dashboard-period",
                &[("days", Arg::Number(30.0)), ("total", Arg::Number(n))],
            )
        };
        assert!(period(1.0).ends_with("1 incydent"), "{}", period(1.0));
        assert!(period(3.0).ends_with("3 incydenty"), "{}", period(3.0));
        assert!(period(5.0).ends_with("5 incydentów"), "{}", period(5.0));
        assert_eq!(
            speaker(Lang::En, "UTC").duration(3 * 3600 + 5 * 60),
            "3 h 5 min"
        );
        assert_eq!(
            speaker(Lang::ZhCn, "UTC").duration(2 * 86400 + 4 * 3600),
            "2天4小时"
        );
    }
}

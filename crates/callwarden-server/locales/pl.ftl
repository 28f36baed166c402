# Panel przeglądu Callwarden i raport o incydencie: polski (pl). Komunikaty, których tu brakuje,
# są wyświetlane z katalogu angielskiego (en.ftl).

## Formaty (wzorce strftime biblioteki chrono, zlokalizowane nazwy miesięcy i dni)
format-datetime = %-d.%m.%Y, %H:%M
format-date = %-d.%m.%Y
duration-minutes = { $m } min
duration-seconds = { $s } s
duration-hours = { $h } godz. { $m } min
duration-days = { $d } d. { $h } godz.

## Ramka
desk-title = Panel przeglądu Callwarden
skip-to-content = Przejdź do treści
nav-label = Menu główne
nav-queue = Kolejka
nav-blocklist = Lista blokad
nav-dashboard = Pulpit
nav-settings = Ustawienia
sign-out = Wyloguj się
signed-in-as = { $who } ({ $role })
role-supervisor = koordynator
role-admin = administrator
role-operator = konsultant
role-switch = centrala
none = Brak.
yes = Tak
no = Nie
back = Wstecz
done = Zapisano: { $what }.
time-zone-note = Godziny w strefie { $zone }.

## Logowanie
sign-in-title = Zaloguj się do panelu przeglądu
sign-in-token = Token dostępu
sign-in-token-help = Token koordynatora lub administratora: od dostawcy tożsamości albo z `callwarden token` dla tokenów wydawanych przez samą usługę.
sign-in-submit = Zaloguj się
sign-in-refused-role = Twoja rola ({ $role }) nie uprawnia do korzystania z panelu przeglądu: wymagana jest rola koordynatora lub administratora.
sign-in-invalid = Ten token nie został przyjęty ({ $reason }).
sign-in-ended = Sesja wygasła (token stracił ważność lub został odrzucony). Zaloguj się ponownie.
signed-out = Wylogowano.
denial-missing_credentials = nie podano tokenu
denial-malformed_credentials = to nie jest token, który Callwarden potrafi odczytać
denial-expired_token = token wygasł
denial-bad_signature = podpis tokenu się nie zgadza
denial-wrong_audience = token jest przeznaczony dla innej usługi
denial-unknown_api_key = nieznany klucz API
denial-role_not_allowed = ta rola nie może tego zrobić

## Błędy
error-title = Nie udało się
error-csrf = Ten formularz wygasł lub nie pochodzi z panelu. Odśwież stronę i spróbuj ponownie.
error-forbidden = Twoja rola nie uprawnia do tej operacji.
error-not-found = Nie znaleziono.
error-invalid = Popraw: { $message }
error-conflict = Teraz nie jest to możliwe: { $message }
error-unavailable = Rejestr jest chwilowo niedostępny: { $message }
error-internal = Coś poszło nie tak po naszej stronie. Spróbuj ponownie; jeśli problem się powtarza, powiadom administratora.

## Kolejka
queue-title = Kolejka przeglądu
queue-counters = Incydenty według statusu
queue-counters-closed = Rozstrzygnięte i odrzucone: zamknięte w ciągu ostatnich 24 godzin.
queue-filters = Filtry
filter-status = Status
filter-status-queue = Oczekujące na przegląd
filter-severity = Waga
filter-category = Kategoria
filter-line = Linia
filter-line-help = Numer w dowolnym formacie lub nazwa linii.
filter-overdue = Tylko po terminie
filter-any = Wszystkie
filter-apply = Zastosuj
filter-clear = Wyczyść
queue-empty = Brak pasujących incydentów.
queue-live = Nowe incydenty pojawiają się tutaj bez przeładowania strony.
queue-live-lost = Aktualizacje na żywo zostały przerwane; ponowne łączenie…
queue-updated = Kolejka została zaktualizowana.
queue-next = Następna strona
column-severity = Waga
column-category = Kategoria
column-caller = Dzwoniący
column-line = Linia
column-reported = Zgłoszono
column-status = Status
column-deadline = Termin
column-incident = Incydent
deadline-left = Zostało { $time }
deadline-overdue = Po terminie o { $time }
deadline-closed = Zamknięty
overdue = Po terminie
caller-withheld = Numer zastrzeżony
open-incident = Otwórz incydent { $id }

## Incydent
incident-title = Incydent { $id }
incident-facts = Fakty
field-status = Status
field-category = Kategoria
field-severity = Waga
field-line = Linia
field-caller = Dzwoniący
field-reporter = Zgłaszający
field-reported-at = Zgłoszono
field-deadline = Termin decyzji
field-source = Źródło
field-note = Co napisał konsultant
field-outcome = Rozstrzygnięcie
field-authority = Organ
field-reference = Numer sprawy
field-block-rule = Reguła blokady
field-resolution-note = Notatka
field-acknowledged = Przyjęto
field-closed = Zamknięto
field-legal-hold = Blokada prawna
field-chain = Łańcuch
field-chain-hash = Skrót łańcucha
actor-by = { $at } ({ $who })
chain-verified = Weryfikacja poprawna: żadne zdarzenie nie zostało zmienione.
chain-broken = Weryfikacja NIEUDANA: zapis został naruszony.
reporter-sealed = Utajniony (zgłoszenie anonimowe)
section-actions = Działania
section-timeline = Oś czasu
section-history = Inne incydenty tego dzwoniącego
section-rules = Reguły, które obecnie dotyczą dzwoniącego
section-statements = Oświadczenia
section-evidence = Dowody
section-export = Eksport raportu
column-seq = #
column-at = Kiedy
column-actor = Kto
column-event = Zdarzenie
column-details = Szczegóły
column-hash = Skrót
column-author = Autor
column-role = Rola
column-text = Oświadczenie
column-uri = Miejsce przechowywania
column-sha256 = SHA-256
column-duration = Długość
column-description = Opis
column-attached = Dołączono
action-acknowledge = Przyjmij
action-acknowledge-help = Przejmij ten incydent: termin na decyzję nadal biegnie.
action-statement = Dodaj oświadczenie
statement-text = Oświadczenie
statement-role = W roli
action-evidence = Dołącz dowód
evidence-uri = Miejsce przechowywania nagrania lub pliku (URI)
evidence-sha256 = Jego skrót SHA-256 (64 cyfry szesnastkowe)
evidence-duration = Długość w sekundach (0, jeśli to nie nagranie)
evidence-description = Opis
action-resolve = Rozstrzygnij
resolve-outcome = Rozstrzygnięcie
resolve-block-for = Zablokuj dzwoniącego na
block-for-good = Na stałe
block-for-day = 1 dzień
block-for-week = 7 dni
block-for-month = 30 dni
block-for-year = 1 rok
resolve-authority = Organ (przy przekazaniu sprawy)
resolve-reference = Numer sprawy nadany przez organ (przy przekazaniu sprawy)
resolve-note = Notatka
action-dismiss = Odrzuć
action-reopen = Otwórz ponownie
reason = Powód
action-export-markdown = Raport (Markdown)
action-export-json = Raport (JSON)
what-acknowledged = przyjęcie incydentu
what-statement = oświadczenie
what-evidence = dowód
what-resolved = rozstrzygnięcie
what-dismissed = odrzucenie
what-reopened = ponowne otwarcie
what-rule-added = nowa reguła
what-rule-removed = usunięcie reguły
what-settings = ustawienia

## Lista blokad
blocklist-title = Lista blokad
lookup-title = Sprawdź numer
lookup-number = Numer (dowolny format)
lookup-line = Linia (opcjonalnie)
lookup-operator = Pseudonim konsultanta (opcjonalnie)
lookup-submit = Sprawdź
lookup-result = { $number }: { $decision }
lookup-reason = Powód: { $reason }
lookup-deciding = Reguła rozstrzygająca
lookup-no-rules = Żadna reguła nie pasuje do tego numeru.
lookup-other-scope = Inna linia lub inny konsultant: nie ma zastosowania
rules-title = Aktywne reguły
rules-filter = Numery zaczynające się od
rules-more = Więcej reguł
column-pattern = Wzorzec
column-effect = Skutek
column-scope = Dotyczy
column-reason = Powód
column-created = Utworzono
column-expires = Wygasa
column-remove = Usuń
expires-never = Nigdy
add-rule-title = Dodaj regułę
rule-pattern = Numer lub prefiks
rule-pattern-help = Dokładny numer w dowolnym formacie lub prefiks międzynarodowy zakończony * (np. +4870012*).
rule-effect = Skutek
rule-scope = Dotyczy
rule-scope-value = Linia lub konsultant (dla tych zakresów)
rule-duration = Na jak długo
rule-reason = Powód
rule-add = Dodaj regułę
rule-remove = Usuń
scope-global = wszystkie linie
scope-line = linia { $value }
scope-operator = konsultant { $value }
scope-kind-global = Wszystkie linie
scope-kind-line = Jedna linia
scope-kind-operator = Jeden konsultant

## Pulpit
dashboard-title = Pulpit
dashboard-period = Ostatnie { $days } dni: { $total ->
    [one] { $total } incydent
    [few] { $total } incydenty
    [many] { $total } incydentów
   *[other] { $total } incydentu
}
chart-by-category = Incydenty dziennie według kategorii
chart-by-severity = Incydenty dziennie według wagi
chart-acknowledge = Czas do przyjęcia
chart-acknowledge-daily = Mediana czasu do przyjęcia, dziennie
chart-top-callers = Najczęściej zgłaszani dzwoniący
chart-caller-counts = { $incidents ->
    [one] jeden incydent
    [few] { $incidents } incydenty
    [many] { $incidents } incydentów
   *[other] { $incidents } incydentu
}, { $reporters ->
    [one] jeden zgłaszający
    [few] { $reporters } zgłaszających
    [many] { $reporters } zgłaszających
   *[other] { $reporters } zgłaszającego
}
chart-no-data = Brak danych dla tego okresu.
percentile-p50 = mediana
percentile-p90 = 90. percentyl
percentile-p99 = 99. percentyl
percentile-max = najdłuższy
chart-table = Dane w formie tabeli

## Ustawienia
settings-title = Ustawienia
settings-language = Język
settings-language-auto = Zgodnie z przeglądarką
settings-time-zone = Strefa czasowa
settings-time-zone-auto = Zgodnie z przeglądarką ({ $zone })
settings-save = Zapisz

## Nazwy kodów
status-open = Otwarty
status-acknowledged = Przyjęty
status-resolved = Rozstrzygnięty
status-dismissed = Odrzucony
severity-low = Niska
severity-medium = Średnia
severity-high = Wysoka
severity-critical = Krytyczna
category-abusive_language = Obraźliwy język
category-sexual_misconduct = Niestosowne zachowania seksualne
category-threat_or_violence = Groźby lub przemoc
category-identity_probing = Próby ustalenia tożsamości konsultanta
category-illegal_content = Treści nielegalne
category-minor_suspected = Dzwoniący może być osobą niepełnoletnią
category-self_harm_risk = Ryzyko samookaleczenia
category-oversharing = Nadmierne ujawnianie informacji prywatnych
category-fraud_or_spam = Oszustwo lub spam
category-other = Inne
outcome-no_action = Bez działań
outcome-warning_issued = Udzielono ostrzeżenia
outcome-caller_blocked = Zablokowano dzwoniącego
outcome-referred_to_authorities = Przekazano odpowiednim organom
outcome-mediated = Przeprowadzono mediację
block-none = Brak
block-from_me = Tylko dla tego konsultanta
block-global_request = Wszędzie (na wniosek)
source-end_and_flag = Zakończono i zgłoszono
source-flag_call = Zgłoszono w trakcie rozmowy
source-report_past_call = Zgłoszono po rozmowie
role-witness = świadek
effect-block = Blokuj
effect-allow = Zezwalaj
decision-allow = dopuszczone
decision-allow_with_notice = dopuszczone, z powiadomieniem konsultanta
decision-reject = odrzucone
reason-no_rule = żadna reguła nie ma zastosowania
reason-blocked = numer jest zablokowany
reason-prefix_blocked = zakres numerów jest zablokowany
reason-allowed_by_rule = zezwala na to reguła
reason-anonymous_allowed = numery zastrzeżone są dopuszczane na tej linii
reason-anonymous_notice = numery zastrzeżone są dopuszczane z powiadomieniem
reason-anonymous_rejected = numery zastrzeżone są odrzucane na tej linii
reason-recent_incidents = dzwoniący był niedawno zgłaszany
reason-fail_open = nie udało się odczytać reguł; linia przepuszcza połączenia
reason-fail_closed = nie udało się odczytać reguł; linia odrzuca połączenia
event-reported = Zgłoszono
event-terminate_sent = Zakończono rozmowę (wysłano polecenie rozłączenia)
event-terminate_acknowledged = Centrala potwierdziła zakończenie rozmowy
event-operator_cooldown = Konsultant otrzymał przerwę
event-caller_blocked = Zablokowano dzwoniącego
event-escalated = Eskalowano do koordynatorów
event-deadline_escalated = Eskalowano: przekroczono termin
event-attention_requested = Poproszono o uwagę
event-debrief_requested = Poproszono o omówienie
event-acknowledged = Przyjęto
event-statement_added = Dodano oświadczenie
event-evidence_attached = Dołączono dowód
event-resolved = Rozstrzygnięto
event-dismissed = Odrzucono
event-reopened = Otwarto ponownie
event-reporter_unsealed = Zniesiono utajnienie zgłaszającego
event-legal_hold_placed = Nałożono blokadę prawną
event-legal_hold_released = Zdjęto blokadę prawną
event-redacted = Usunięto dane osobowe (retencja)

## Eksportowany raport
report-title = Raport o incydencie { $id }
report-generated = Wygenerowano { $at } ({ $format }).
report-section-incident = Incydent
report-column-field = Pole
report-column-value = Wartość
report-status = Status
report-reported-at = Zgłoszono
report-deadline = Termin decyzji
report-line = Linia
report-caller = Dzwoniący
report-caller-withheld = numer zastrzeżony
report-call = Rozmowa
report-call-value = { $call } (centrala { $switch })
report-reporter = Zgłaszający
report-reporter-sealed = { $reporter } (utajniony)
report-source = Źródło
report-section-what = Co się stało
report-category = Kategoria
report-severity = Waga
report-block-requested = Prośba o blokadę
report-debrief-requested = Prośba o omówienie
report-yes = tak
report-no = nie
report-words-reported = Zgłoszone wypowiedzi:
report-empty = (puste)
report-section-actions = Podjęte działania
report-none = Brak.
report-action = { $at } { $kind } ({ $actor }): { $details }
report-section-statements = Oświadczenia
report-statement = { $at } — { $author } ({ $role }):
report-section-evidence = Dowody
report-column-id = ID
report-column-uri = URI
report-column-sha256 = SHA-256
report-column-duration = Czas trwania (s)
report-column-description = Opis
report-column-attached-by = Dołączone przez
report-column-attached-at = Data dołączenia
report-column-captured-at = Data zarejestrowania
report-section-review = Przegląd i rozstrzygnięcie
report-acknowledged = Przyjęto: { $at } ({ $who })
report-closed = Zamknięto: { $at } ({ $who })
report-outcome = Rozstrzygnięcie: { $outcome }
report-referred = Przekazano do: { $authority }, numer sprawy { $reference }
report-block-rule = Reguła blokady: { $rule }
report-section-timeline = Oś czasu
report-column-seq = #
report-column-at = Kiedy
report-column-actor = Kto
report-column-event = Zdarzenie
report-column-details = Szczegóły
report-column-hash = Skrót
report-section-seal = Pieczęć
report-seal-verified = Zdarzenia: { $events }; skrót łańcucha `{ $hash }`; weryfikacja łańcucha poprawna.
report-seal-broken = Zdarzenia: { $events }; skrót łańcucha `{ $hash }`; łańcuch NIE PRZECHODZI WERYFIKACJI.

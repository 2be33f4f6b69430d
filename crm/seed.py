"""Demo data for Advanced Spine Center, Plano TX: the ``seed-demo`` command and the benchmark set.

``seed_demo(n_leads=, n_calls=)`` fills the database with 18 months of believable activity:
staff (one demo login per role, printed by ``make run``), referring practices, the settings
row, holidays, leads with real stage histories, tags, notes, tasks, appointments, form
requests, and calls on the clinic lines.

How it stays fast (100,000 leads and 1,000,000 calls in a few minutes on two cores): every id
is assigned here, starting after the table's current maximum; rows are plain tuples written
with the driver's ``executemany`` on SQLite and ``COPY`` on PostgreSQL, in chunks that are
committed as they go; times are whole UTC seconds formatted the way SQLAlchemy stores them;
each complaint text of the pool is tagged once by ``crm.triage.tag_complaint``. Calls are
first planned as packed integers (time, lead, kind), sorted, then written in time order, so
call ids grow with ``started_at``.

Re-running adds data: ids continue after the current maximum, new phone numbers avoid every
number already on a lead (so ``open_phone_key`` stays unique) and each ``call_sid`` embeds its
id. Staff, practices, holidays and the settings row are created only when missing.

Shape (checked by ``tests/test_seed.py``): about 20 % of calls missed (inbound, unanswered or
voicemail), about 1 % red-flag leads (most cleared of their urgent flag, with a note, once
someone spoke with the patient), about 5 % repeat callers (leads with two or more inbound
calls), a funnel from ``new`` to ``surgery_scheduled`` with closings, skipped stages, moves back
and reopenings. Progress goes to ``echo`` as counts only: no patient data.
"""

from __future__ import annotations

import bisect
import json
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from crm import clock
from crm.business_hours import add_business_minutes, load_calendar
from crm.extensions import db
from crm.models import ClinicSettings, Holiday, ReferringPractice, User
from crm.passwords import hash_password
from crm.phones import normalize
from crm.text import fold, search_terms

CLINIC_TZ = ZoneInfo("America/Chicago")
MAIN_LINE = "+19724995457"
ADS_LINE = "+12145550100"
LINE_CAMPAIGN = {MAIN_LINE: "main", ADS_LINE: "google-ads"}
SITE = "https://www.advanced-spine-center.example"
MONTHS = 18
CHUNK = 5_000
CALL_CHUNK = 50_000
MISSED_TARGET = 0.20
LINKED_SHARE = 0.58  # "most calls belong to a lead"; the rest: existing patients, vendors, spam

# (email, role, name, password): fixed, printed by ``make run``. Each passes the policy.
DEMO_LOGINS: list[tuple[str, str, str, str]] = [
    ("frontdesk@demo.clinic", "front_desk", "Ana Delgado", "spine-demo-desk-pass"),
    ("surgeon@demo.clinic", "surgeon", "Dr. Michael Chen", "spine-demo-doctor-pass"),
    ("manager@demo.clinic", "manager", "Karen Whitfield", "spine-demo-reports-pass"),
    ("admin@demo.clinic", "admin", "Sam Okafor", "spine-demo-settings-pass"),
]
# More staff, so work is spread believably. They sign in only after an admin resets them.
EXTRA_STAFF: list[tuple[str, str, str]] = [
    ("tamika.brooks@demo.clinic", "front_desk", "Tamika Brooks"),
    ("luis.herrera@demo.clinic", "front_desk", "Luis Herrera"),
    ("jenny.tran@demo.clinic", "front_desk", "Jenny Tran"),
    ("priya.raman@demo.clinic", "surgeon", "Dr. Priya Raman"),
    ("robert.hale@demo.clinic", "surgeon", "Dr. Robert Hale"),
]


def _words(*chunks: str) -> tuple[str, ...]:
    """Split space-separated names (kept compact in the source) into a tuple."""
    return tuple(" ".join(chunks).split())


PRACTICES: list[tuple[str, str, str]] = [
    ("Plano Family Medicine Associates", "+19725960142", "4001 W 15th St, Plano, TX 75093"),
    ("Legacy Internal Medicine", "+14698010233", "5800 Tennyson Pkwy, Plano, TX 75024"),
    ("North Dallas Primary Care", "+12146910377", "12200 Preston Rd, Dallas, TX 75230"),
    ("Collin County Orthopedic Group", "+19725783190", "6020 W Parker Rd, Plano, TX 75093"),
    ("Frisco Sports Medicine", "+14693624415", "4500 Ohio Dr, Frisco, TX 75035"),
    ("Preston Road Physical Therapy", "+19727312268", "8080 Preston Rd, Plano, TX 75024"),
    ("Willow Bend Chiropractic", "+19724039981", "6121 W Park Blvd, Plano, TX 75093"),
    ("Richardson Pain Management", "+19726442750", "401 W Campbell Rd, Richardson, TX 75080"),
    ("Allen Family Practice", "+12147270614", "1105 Central Expy N, Allen, TX 75013"),
    ("McKinney Medical Clinic", "+19725420388", "4510 Medical Center Dr, McKinney, TX 75069"),
    ("Parker Road Urgent Care", "+19728670455", "1900 E Parker Rd, Plano, TX 75074"),
    ("Park Cities Internal Medicine", "+12143681277", "8226 Douglas Ave, Dallas, TX 75225"),
    ("Addison Physical Therapy & Rehab", "+19722390846", "4950 Belt Line Rd, Addison, TX 75254"),
    ("Carrollton Family Health", "+19724462031", "2625 Old Denton Rd, Carrollton, TX 75006"),
    ("Lakewood Primary Care", "+12148270560", "6310 La Vista Dr, Dallas, TX 75214"),
]

FIRST_NAMES = _words(
    "José María Juan Luis Carlos Ana Sofía Lucía Alejandro Guadalupe Jesús Rosa Miguel Carmen "
    "Raúl Verónica Andrés Mónica Héctor Inés Linh Minh Thảo Huy Lan Tuấn Mai Anh Priya Rahul "
    "Anjali Vikram Deepa Arjun Sanjay Kavya Chinedu Ngozi Oluwaseun Adaeze Emeka Folake Wei Mei "
    "Jian Xiu Hao Min-jun Ji-woo Seo-yeon Ahmed Fatima Omar Layla Yusuf Noor Hassan Mariam James "
    "Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard "
    "Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa Matthew Betty "
    "Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua "
    "Michelle Kenneth Dorothy Kevin Carol Brian Amanda George Melissa Timothy Deborah Ronald "
    "Stephanie Jason Rebecca Edward Sharon Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy "
    "Nicholas Angela Eric Shirley Jonathan Brenda Larry Pamela Justin Nicole Scott Renée Zoë "
    "Chloé André Noël Tyrone Keisha DeShawn Latoya Jamal Aaliyah Marcus Imani Darnell Tamara "
    "Bubba Wade Dale Earl Shelby Colt Lorena Yesenia Marisol Rodrigo Esperanza"
)
LAST_NAMES = _words(
    "García Rodríguez Martínez Hernández López González Pérez Sánchez Ramírez Torres Flores Rivera "
    "Gómez Díaz Reyes Cruz Morales Ortiz Gutiérrez Chávez Ramos Ruiz Mendoza Castillo Jiménez "
    "Nguyễn Trần Lê Phạm Hoàng Huỳnh Võ Bùi Patel Shah Reddy Iyer Gupta Singh Desai Kumar Okafor "
    "Adeyemi Okeke Eze Balogun Nwosu Chen Wang Li Zhang Liu Huang Kim Park Lee Choi Haddad Khalil "
    "Nasser Saleh Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas "
    "Moore Jackson Martin Thompson White Harris Clark Lewis Robinson Walker Young Allen King "
    "Wright Scott Hill Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell "
    "Parker Evans Edwards Collins Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Bailey "
    "Reed Kelly Howard Cox Ward Richardson Watson Brooks Wood James Bennett Gray Hughes Price "
    "Sanders Myers Long Ross Foster Washington Jefferson O'Brien McAllister Vandenberg "
    "Schmidt Müller Novak Kowalski Ivanova Petrov Rossi Russo Dubois Lefèvre Bergström Åberg"
)
EMAIL_DOMAINS = (
    ("gmail.com", 45),
    ("yahoo.com", 14),
    ("outlook.com", 8),
    ("icloud.com", 10),
    ("hotmail.com", 8),
    ("att.net", 6),
    ("sbcglobal.net", 5),
    ("verizon.net", 2),
    ("aol.com", 2),
)
INSURANCE = (
    ("Blue Cross Blue Shield of Texas", 26),
    ("Aetna", 12),
    ("UnitedHealthcare", 14),
    ("Cigna", 9),
    ("Medicare", 16),
    ("Humana", 5),
    ("Texas Medicaid", 3),
    ("Tricare", 2),
    ("Self-pay", 4),
    ("Workers' comp", 3),
    (None, 20),
)
LANGUAGES = (("English", 84), ("Spanish", 12), ("Vietnamese", 2), ("Hindi", 1), ("Korean", 1))
PREFERRED_TIMES = (
    (None, 40),
    ("Mornings", 16),
    ("Afternoons", 14),
    ("After 3 pm", 8),
    ("Lunch time", 6),
    ("Any time", 10),
    ("Before 10 am", 3),
    ("After work, 5 pm on", 3),
)
MEDICATIONS = (
    "Ibuprofen as needed",
    "Naproxen twice a day",
    "Cyclobenzaprine (muscle relaxant) at night",
    "Meloxicam 15 mg",
    "Gabapentin 300 mg",
    "Tylenol and heat",
    "Methocarbamol",
    "Prednisone taper",
    "Tramadol from urgent care",
    "Tizanidine at bedtime",
)
# Why a person cleared a red-flag lead's urgent flag once they had spoken with the patient.
URGENT_CLEARED = (
    "Urgent flag cleared: spoke with the patient, sent to the ER; seen there and stable.",
    "Urgent flag cleared: no new weakness or bladder change, symptoms are long-standing.",
    "Urgent flag cleared: patient went to the ER the same day; consult requested after.",
)
STAFF_NOTES = (
    "Left voicemail, will try again tomorrow morning.",
    "Prefers a text before any call; works night shifts.",
    "Asked us to send the new-patient forms by email.",
    "Requested imaging report from the referring office.",
    "Insurance verified; referral on file.",
    "Wants an appointment on a Friday if possible.",
    "Spanish-speaking; Luis to follow up.",
    "Daughter helps with scheduling; OK to talk to her.",
    "Records received and attached to the chart.",
    "Waiting on prior authorization for the MRI.",
    "Patient will bring the MRI disc to the consult.",
    "Rescheduled at the patient's request (work conflict).",
    "PT notes requested from the therapy clinic.",
    "Called to check on progress with physical therapy.",
)
NOT_A_PATIENT = (
    ("Vendor: medical supplies sales call", 30),
    ("Existing patient: billing question", 35),
    ("Spam / robocall", 25),
    ("Wrong number", 10),
)

# The patients' own words (form messages, call notes, voicemails): tagged once each.
COMPLAINTS: tuple[str, ...] = (
    "My lower back keeps going into spasms when I bend over to pick things up. Started about a week ago.",
    "Stiff neck and pain between my shoulder blades, worse after a day at the computer.",
    "I have a mid back spasm that wraps around my ribs on the right side. Comes and goes for months.",
    "My low back locks up every morning and it takes me 20 minutes to stand up straight.",
    "Pain shoots down my left leg from my buttock to my foot. Doctor says it's sciatica.",
    "MRI says bulging disc at L4-L5. Did 8 weeks of PT and no better.",
    "I was told I might have spinal stenosis. My legs ache when I walk more than a block.",
    "Pulled something lifting a box at work on Tuesday, right side of my lower back.",
    "Back spasms on and off for two years. Physical therapy helped a little but I still can't work.",
    "Neck pain that goes down into my right arm and my fingers tingle. C5-6 herniation on MRI.",
    "My lower back hurts on both sides, worse sitting. Tried ice, heat, stretching, nothing lasts.",
    "Herniated disc L5-S1 diagnosed last year. The pain down my right leg is back and worse than ever.",
    "Hi, I'm calling for my father, he has stenosis and can barely walk to the mailbox anymore.",
    "Low back pain for 6 months. Had kidney stones before but the urologist ruled that out.",
    "I did physical therapy for 12 weeks and was discharged for no progress. "
    "Still have sharp pain in my lower back.",
    "Upper back and neck spasms since I started a new job, I sit all day.",
    "Could it be a herniated disc? The pain radiates into my left leg when I cough or sneeze.",
    "My back went out while gardening yesterday. Can hardly move.",
    "Tailbone pain for about 3 months, hurts to sit in the car.",
    "I have chronic lower back pain, had 2 epidural injections, PT twice, nothing has worked long term.",
    "My chiropractor thinks I need to see a spine specialist. Lower back and left hip pain for a year.",
    "No numbness or tingling, just a lot of tightness across my lower back for 3 weeks.",
    "Denies bladder problems. Low back spasms on the left after a long drive.",
    "Thoracic pain around T7, feels like a band around my chest, for about two months.",
    "I'm a nurse and I hurt my back turning a patient. Right lower back, 10 days ago.",
    "Pain between my shoulder blades and down my left arm, numb thumb. Going on 8 weeks.",
    "Hello, I need an appointment. My doctor says my MRI shows moderate stenosis at L3-L4.",
    "Constant ache in my lower back, worse at night, started over the summer.",
    "Sharp pain when I twist, right side mid back, I think I strained a muscle playing golf.",
    "I've had back spasms for years but this last one has lasted a month and won't quit.",
    "Dolor en la parte baja de la espalda, my son is writing for me. It goes down my right leg, 2 months.",
    "Calling for my wife, she has a bulging disc in her neck and her right hand is numb.",
    "Did 6 weeks of PT and no better. Low back and both legs ache when standing.",
    "The physio helped at first but the pain came right back. Lumbar pain for about 4 months.",
    "My neck cracks and locks up, pain spreads to both shoulders. Been like this since last year.",
    "Back pain started after I moved apartments last weekend, lower back, left side.",
    "MRI showed no herniation but I still have pain running down my leg. What else could it be?",
    "I haven't tried PT yet. Lower back spasms for 2 weeks after shoveling.",
    "Looking for a second opinion. Another surgeon recommended lumbar fusion for my L4-L5 disc.",
    "My mother had stenosis and surgery here years ago. Now my own low back is hurting for months.",
    "Lower back pain and a burning feeling down the back of my right thigh, about five weeks.",
    "Stiff and sore upper back after a long flight, it's been 4 days.",
    "I had a microdiscectomy 3 years ago and now the pain is coming back in my left leg.",
    "Can't stand up straight after sitting. Lower back, 3 months, ibuprofen not helping.",
    "Spasms in my mid back that make it hard to breathe deep. Started this week.",
    "My pain doctor wants me evaluated for surgery. Lumbar stenosis, failed injections and therapy.",
    "Neck pain with headaches at the base of my skull, 6 weeks, worse at work.",
    "I think I have a slipped disc. Low back pain and my left leg feels heavy and tingly.",
    "Hola, I need help with my back. It hurts in the lower part for 3 weeks, worse on the left.",
    "Pain in my right lower back, could be my kidney? Had an infection last year. Not sure.",
    "Gallbladder was removed last year; now pain on the right side of my mid back. Is it my spine?",
    "Cervical disc herniation at C6-C7 on MRI, pain and tingling in my left arm for 10 weeks.",
    "I'm 68, lower back and legs get tired and heavy when I walk, better when I sit or lean on a cart.",
    "Weekend warrior here. Strained my lower back deadlifting on Saturday.",
    "Back spasm that started yesterday after sneezing. Right side, low back.",
    "I've been doing PT for 4 weeks and it is going well, but my doctor wants a spine consult anyway.",
    "Upper back spasm on the left side for a few days, feels like a knot under my shoulder blade.",
    "Had an X-ray at urgent care that showed arthritis in my lower spine. Pain for over a year.",
    "My leg pain is worse than my back pain. Right leg, down to the ankle, 7 weeks now.",
    "Ruptured disc in my lower back according to the ER. They told me to follow up with a spine surgeon.",
    "The muscle relaxants help me sleep but the lower back spasms come back every afternoon.",
    "I need to know if I'm a candidate for surgery. Lumbar stenosis and PT did not help.",
    "Pain in the lower back and buttocks on both sides, morning stiffness, for years.",
    "Hurt my neck sleeping wrong, now it's been 3 weeks and still can't turn my head to the left.",
    "Tingling in both hands and neck pain for about 2 months. Is it coming from my neck?",
    "My back has been bothering me since I had my baby 5 months ago. Lower back, right side.",
    "I drive a truck for a living and my lower back is killing me, shooting pain into my left leg.",
    "My sister had a herniated disc and said you guys were great. I have low back pain for 2 weeks.",
    "If the pain gets any worse I'll go to the ER, but for now it's a dull ache in my low back.",
    "Chronic neck pain since a whiplash injury years ago, recently worse, pain into my right shoulder.",
    "Bulging disc at L3-L4 and L4-L5, numbness in my right foot at times, 5 months.",
    "I work at a warehouse, pulled a muscle in my lower back lifting, happened last Thursday.",
    "Physical therapy 3 times a week for 2 months, still hurts to sit. L5-S1 bulge.",
    "Lower back pain that wakes me up at night. Started about 6 weeks ago, no injury.",
    "Mid back pain and stiffness, I'm a hairdresser and stand all day. Months of this.",
    "Want to schedule a consultation for my lower back. Tried everything: PT, chiropractor, injections.",
    "Pain in my neck and upper back, the left side, started when I began working from home.",
    "My physical therapist said I should see a surgeon because I'm not improving. Lumbar disc.",
    "Back spasms every time I get up from a chair, low back, for the last 10 days.",
    "I'm calling about my husband, his sciatica is so bad he can't sleep. Right leg, 2 months.",
    "Severe low back pain after I bent down to tie my shoe this morning.",
    "The pain goes from my lower back into my groin on the right. Had kidney stones twice before.",
    "Pinched nerve in my neck, my right arm aches and my grip feels fine. Going on 3 months.",
    "My MRI report says degenerative disc disease and mild foraminal narrowing at L4-5.",
    "Sitting at my desk makes my lower back spasm. Standing desk hasn't helped. 4 months.",
    "I had lumbar fusion 10 years ago, now the level above is hurting. Pain into both legs.",
    "Low back ache and right hip pain, my primary thinks it's my back, not my hip. Since spring.",
    "Can't bend forward without a sharp pain in my lower back. Happened last week moving furniture.",
    "My teenage son plays football and has had low back pain for 2 months, he is the patient.",
    "Left side low back pain, been taking naproxen for 3 weeks with no relief.",
    "Had a steroid shot in my back in the fall, helped for a month. The pain is back now.",
    "Neck stiffness, shoulder blade pain, and headaches for over a year. PT helped for a while.",
    "Lower back pain and my legs feel weak-ish at the end of the day but I can walk fine.",
    "Back spasms that radiate around my ribs on the left. Doctor ruled out heart problems.",
    "Spinal stenosis diagnosed by my orthopedist, wants me to see a spine surgeon. Both legs.",
    "Just want to know my options. Herniated disc, 9 weeks of physical therapy, still numb in my left foot.",
    "Sore lower back after a long hike, about five days ago. Getting a little better.",
    "Pain right in the middle of my back between my shoulder blades, been about two weeks.",
    "Lower back went into spasm at the gym two days ago, left side. Ice helps a bit.",
    "My husband is calling for me, I have a herniated disc at L4-L5 and pain down my right leg.",
    "I'm a teacher and I stand all day. Low back pain for about 3 years, worse every school year.",
    "Pain at the base of my neck that spreads into my left shoulder, off and on for 6 months.",
    "After my C5-C6 fusion elsewhere I still have neck pain. Looking for a second opinion.",
    "Tailbone and low back pain after sitting for long periods, about 2 months.",
    "My back spasm is on the right side under my shoulder blade, started yesterday.",
    "Lumbar pain for 1 year, did 10 PT sessions, no better, ready to talk about surgery.",
    "Numbness in my right thigh and a low back ache. Could it be stenosis? About 3 months.",
    "I have pain in my low back and the left side of my butt, sciatica I think, since last month.",
    "Upper back pain when I carry my toddler, started 3 weeks ago.",
    "The therapist discharged me because my insurance ran out, still have back and leg pain.",
    "Ongoing neck pain with tingling into both arms, MRI pending. Several months.",
    "My low back locks up when I stand from sitting, and the pain goes into my right calf. 8 weeks.",
    "Had an MRI at another clinic showing a protruding disc at L5-S1. Left leg pain for 3 months.",
    "Lower back pain with muscle spasms after a long road trip last week.",
    "Calling for my grandmother, she's 81, back pain and her legs hurt when she walks to church.",
    "I have constant lower back pain from years of construction work. It's gotten worse since summer.",
    "Mid back pain from poor posture I guess, tight muscles, 2 weeks.",
    "My doctor ordered an MRI and it shows a herniated disc pressing on a nerve in my neck.",
    "Recurring back spasms every few months for 5 years. Wondering if there is a long-term fix.",
    "Pain in my right buttock going down the back of my leg to the knee, 6 weeks, PT not started yet.",
    "Low back pain, no injury, no numbness, just stiff and sore for about a month.",
    "Lower back spasms and pain that shoots down both legs, worse walking, better bending forward.",
    "Since Monday it's been hard to control my bladder, and there's numbness between my legs. "
    "Low back pain too.",
    "My right foot drags when I walk and the pain shoots down my right leg. L5-S1 herniation on MRI.",
    "I was rear-ended on the highway last week and now my neck and upper back are in spasm.",
    "Fell off a ladder at work two days ago and landed on my back, mid back spasms around my ribs.",
    "My legs keep giving out on me and my lower back hurts all the time, getting worse every week.",
    "Lost control of my bowels yesterday and my low back pain is the worst it has ever been.",
    "Car accident 3 weeks ago, now my left arm is weak and my neck is stiff.",
    "Calling for my husband, he has new numbness in the groin area and trouble peeing since Saturday.",
    "Slipped on the ice and fell hard on my tailbone, 10 days ago, still can't sit.",
    "Progressive numbness in both legs over the past month, MRI shows severe stenosis at L4-L5.",
    "My grip in my right hand is getting weaker and the pain runs from my neck into my arm.",
    "Got hit hard in a football game Friday, sharp pain in my mid back.",
)


# --------------------------------------------------------------------------- calendar


class _Calendar:
    """The period's hours in clinic time, with weights that give calls and work their shape.

    Each slot is one local hour (its UTC start, local hour and weekday), so drawing a time
    is a bisect, and so is reading a time's local hour back, right across DST changes.
    """

    CALL_HOURS = (
        0.03, 0.02, 0.01, 0.01, 0.01, 0.02, 0.06, 0.30, 1.00, 1.45, 1.50, 1.30,
        0.90, 1.20, 1.30, 1.10, 0.85, 0.35, 0.20, 0.13, 0.09, 0.07, 0.05, 0.04,
    )  # fmt: skip
    WEB_HOURS = (
        0.15, 0.08, 0.05, 0.04, 0.05, 0.10, 0.25, 0.50, 0.80, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.10, 1.20, 1.20, 1.0, 0.70, 0.35,
    )  # fmt: skip
    STAFF_HOURS: ClassVar[dict[int, float]] = {
        8: 1.0,
        9: 1.2,
        10: 1.2,
        11: 1.1,
        12: 0.6,
        13: 1.0,
        14: 1.1,
        15: 1.0,
        16: 0.8,
    }
    CALL_DAYS = (1.25, 1.10, 1.0, 0.95, 0.85, 0.22, 0.14)
    WEB_DAYS = (1.15, 1.05, 1.0, 1.0, 0.9, 0.7, 0.75)

    def __init__(self, start_day: date, n_days: int, end: int, holidays: set[date]) -> None:
        self.end = end
        self.epoch: list[int] = []
        self.hour: list[int] = []
        self.wday: list[int] = []
        self.cum_calls: list[float] = []
        self.cum_web: list[float] = []
        self.cum_staff: list[float] = []
        self.open: list[bool] = []
        c_calls = c_web = c_staff = 0.0
        for d in range(n_days + 1):
            day = start_day + timedelta(days=d)
            wd = day.weekday()
            closed_day = day in holidays
            trend = 0.85 + 0.3 * d / n_days  # the practice grows a little over the period
            for h in range(24):
                e = int(datetime(day.year, day.month, day.day, h, tzinfo=CLINIC_TZ).timestamp())
                if self.epoch and e <= self.epoch[-1]:
                    continue  # the hour skipped by the spring DST change
                if e >= end:
                    break
                local = datetime.fromtimestamp(e, CLINIC_TZ)
                hour = local.hour
                weekend = wd >= 5
                w_call = self.CALL_HOURS[hour] * self.CALL_DAYS[wd] * trend
                if weekend:
                    w_call = self.CALL_DAYS[wd] * trend * (0.6 if 9 <= hour <= 18 else 0.05)
                if closed_day:
                    w_call *= 0.15
                w_web = self.WEB_HOURS[hour] * self.WEB_DAYS[wd] * trend
                staff = 0.0 if weekend or closed_day else self.STAFF_HOURS.get(hour, 0.0)
                c_calls += w_call
                c_web += w_web
                c_staff += staff
                self.epoch.append(e)
                self.hour.append(hour)
                self.wday.append(wd)
                self.cum_calls.append(c_calls)
                self.cum_web.append(c_web)
                self.cum_staff.append(c_staff)
                self.open.append(staff > 0)
        # next_open[i]: the first slot at or after i in which staff work (-1: none left).
        self.next_open = [-1] * len(self.epoch)
        nxt = -1
        for i in range(len(self.epoch) - 1, -1, -1):
            if self.open[i]:
                nxt = i
            self.next_open[i] = nxt

    def slot(self, t: int) -> int:
        """Return the index of the local hour containing ``t``."""
        return max(0, bisect.bisect_right(self.epoch, t) - 1)

    def local(self, t: int) -> tuple[int, int]:
        """Return (local hour, weekday) of a UTC epoch second."""
        i = self.slot(t)
        return self.hour[i], self.wday[i]

    def is_open(self, t: int) -> bool:
        return self.open[self.slot(t)]

    def draw(self, cum: list[float], rng: random.Random, k: int) -> list[int]:
        """Draw ``k`` times over the whole period, shaped by ``cum``."""
        slots = rng.choices(range(len(self.epoch)), cum_weights=cum, k=k)
        end = self.end - 1
        return [min(end, self.epoch[s] + int(rng.random() * 3600)) for s in slots]

    def within(self, cum: list[float], a: int, b: int, rng: random.Random) -> int | None:
        """Draw one time in [a, b], shaped by ``cum``; None when no weight falls in it."""
        if b <= a:
            return None
        lo = self.slot(a)
        hi = bisect.bisect_left(self.epoch, b)
        if hi <= lo:
            return None
        base = cum[lo - 1] if lo > 0 else 0.0
        top = cum[hi - 1]
        if top <= base:
            return None
        i = bisect.bisect_right(cum, base + rng.random() * (top - base), lo, hi)
        i = min(i, hi - 1)
        t = self.epoch[i] + int(rng.random() * 3600)
        return max(a, min(t, b))

    def staff_time(self, a: int, b: int, rng: random.Random) -> int:
        """A time in [a, b] during business hours, widening the window until it has one."""
        for _ in range(6):
            t = self.within(self.cum_staff, a, b, rng)
            if t is not None:
                return t
            b += 2 * 86400
        return a + int(rng.random() * max(1, b - a))

    def opening(self, t: int) -> int:
        """Return ``t`` if the clinic is open then, else the start of the next open hour."""
        i = self.slot(t)
        if self.open[i]:
            return t
        j = self.next_open[i]
        return self.epoch[j] if j >= 0 else t


# --------------------------------------------------------------------------- writing


class _Writer:
    """Bulk rows into one table: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""

    def __init__(self) -> None:
        self.pg = db.engine.dialect.name == "postgresql"
        self.suffix = "+00" if self.pg else ".000000"

    def ts(self, epoch: int | None) -> str | None:
        """Format a UTC epoch second as the column stores it (naive text on SQLite)."""
        if epoch is None:
            return None
        return (_EPOCH + timedelta(seconds=epoch)).isoformat(" ") + self.suffix

    def raw(self) -> Any:
        return db.session.connection().connection.driver_connection

    def write(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        names = ", ".join(columns)
        conn = self.raw()
        if self.pg:
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            cur = conn.cursor()
            try:
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608  # nosec B608
            finally:
                cur.close()


_EPOCH = datetime(1970, 1, 1)  # the naive base of the text the columns store

LEAD_COLS = _words(
    "id first_name last_name phone phone_last7 phone_last4 open_phone_key email date_of_birth "
    "preferred_contact preferred_time language source campaign landing_page referrer utm_source "
    "utm_medium utm_campaign referring_practice_id insurance owner_id surgeon_id stage "
    "stage_entered_at close_reason closed_from_stage in_queue urgent not_a_patient "
    "not_a_patient_reason merged_into_id possible_duplicate_of_id imaging_type imaging_date "
    "imaging_finding pt_weeks pt_helped medications injections chiropractic "
    "conservative_care_helped consent_phone consent_sms consent_email consent_detailed_voicemail "
    "created_at updated_at last_activity_at first_attempt_at first_contact_at first_contact_due_at "
    "version"
)
STAGE_COLS = _words("id lead_id from_stage to_stage actor_id at reason close_reason override")
TAG_COLS = ("id", "lead_id", "code", "origin", "state", "set_by_id", "created_at", "updated_at")
TAG_CHANGE_COLS = ("id", "lead_id", "code", "action", "origin", "actor_id", "at")
TERM_COLS = ("id", "lead_id", "term")
NOTE_COLS = ("id", "lead_id", "author_id", "body", "created_at")
TASK_COLS = _words(
    "id lead_id call_id kind title due_at assignee_id attempt created_at created_by_id done_at done_by_id"
)
APPT_COLS = _words("id lead_id kind starts_at surgeon_id location outcome notes created_at created_by_id")
REQUEST_COLS = _words(
    "id lead_id submitted_at first_name last_name phone email message answers consent_text_version "
    "ip_address landing_page referrer utm_source utm_medium utm_campaign"
)
CONSENT_COLS = _words("id lead_id channel granted at method text_version ip_address recorded_by_id")
CALL_COLS = _words(
    "id call_sid lead_id from_number to_number line campaign direction status sequence_number "
    "started_at local_hour local_weekday duration_seconds recording_url answered voicemail missed "
    "handled_by_id disposition notes not_a_patient created_at updated_at"
)
TABLES = _words(
    "leads stage_changes lead_tags tag_changes lead_search_terms notes tasks appointments "
    "appointment_requests consents calls"
)

# Call plan flags (low 8 bits of a planned call): direction, outcome, purpose.
OUT = 1
ANSWERED, NO_ANSWER, BUSY, CANCELED, VOICEMAIL, FAILED = range(6)
INTAKE, ATTEMPT, FOLLOW_UP, REPEAT, UNLINKED = range(5)

OPEN_STAGES = _words(
    "new contacted conservative_care physical_therapy evaluation surgical_review consult_scheduled "
    "consult_completed surgery_scheduled"
)
REVIEW = 5
# How far leads get (index into OPEN_STAGES), before the clock cuts recent leads short.
FUNNEL_WEIGHTS = (12, 20, 24, 14, 10, 8, 4, 3, 5)
CLOSE_CHANCE = (0.9, 0.5, 0.45, 0.4, 0.3, 0.3, 0.12, 0.45, 0.02)
CLOSE_REASONS_BY_STAGE: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("no_response", 75), ("went_elsewhere", 15), ("not_a_candidate", 10)),
    1: (
        ("no_response", 40),
        ("went_elsewhere", 25),
        ("resolved_conservatively", 20),
        ("not_a_candidate", 15),
    ),
    2: (("resolved_conservatively", 55), ("no_response", 20), ("went_elsewhere", 25)),
    3: (("resolved_conservatively", 60), ("no_response", 15), ("went_elsewhere", 25)),
    4: (("resolved_conservatively", 30), ("went_elsewhere", 35), ("not_a_candidate", 35)),
    5: (("not_a_candidate", 65), ("went_elsewhere", 35)),
    6: (("went_elsewhere", 60), ("no_response", 40)),
    7: (("not_a_candidate", 50), ("resolved_conservatively", 30), ("went_elsewhere", 20)),
    8: (("went_elsewhere", 100),),
}
CLOSE_TEXT = {
    "no_response": "No answer after three call-back attempts.",
    "went_elsewhere": "Patient chose a provider closer to home.",
    "resolved_conservatively": "Pain resolved with conservative care; will call if it returns.",
    "not_a_candidate": "Not a surgical candidate at this time; back to primary care.",
    "referred_to_er": "Red flag: advised to go to the emergency room now.",
    "duplicate": "Duplicate of an earlier lead for the same patient.",
}
# Days after which an open lead left in a stage is usually closed (about 3x the aging limits).
STALE_DAYS = (14, 30, 90, 90, 60, 12, 45, 30)
# Days between entering one stage and the next (drawn in business hours).
STAGE_GAP_DAYS = {2: (0, 3), 3: (3, 21), 4: (14, 60), 5: (5, 30), 6: (1, 7), 8: (3, 21)}


def _pick(rng: random.Random, pairs: Sequence[tuple[Any, int]]) -> Any:
    """Choose one value of (value, weight) pairs."""
    return rng.choices([v for v, _ in pairs], weights=[w for _, w in pairs], k=1)[0]


# --------------------------------------------------------------------------- reference rows


def federal_holidays(first: date, last: date) -> list[tuple[date, str]]:
    """The federal holidays the clinic closes for (observed dates), between two days."""
    out: list[tuple[date, str]] = []

    def nth(year: int, month: int, weekday: int, n: int) -> date:
        d = date(year, month, 1)
        d += timedelta(days=(weekday - d.weekday()) % 7)
        return d + timedelta(weeks=n - 1)

    def last_monday(year: int, month: int) -> date:
        d = date(year, month + 1, 1) - timedelta(days=1)
        return d - timedelta(days=d.weekday())

    def observed(d: date) -> date:
        return d - timedelta(days=1) if d.weekday() == 5 else d + timedelta(days=1) if d.weekday() == 6 else d

    for year in range(first.year, last.year + 1):
        for day, name in (
            (observed(date(year, 1, 1)), "New Year's Day"),
            (nth(year, 1, 0, 3), "Martin Luther King Jr. Day"),
            (last_monday(year, 5), "Memorial Day"),
            (observed(date(year, 6, 19)), "Juneteenth"),
            (observed(date(year, 7, 4)), "Independence Day"),
            (nth(year, 9, 0, 1), "Labor Day"),
            (nth(year, 11, 3, 4), "Thanksgiving Day"),
            (observed(date(year, 12, 25)), "Christmas Day"),
        ):
            if first <= day <= last:
                out.append((day, name))
    return out


@lru_cache(maxsize=16)
def _hash_once(password: str) -> str:
    """Hash a password with Argon2id once per process: it is slow on purpose (salted, so reusable)."""
    return hash_password(password)


@lru_cache(maxsize=1)
def _phone_prefixes() -> tuple[str, ...]:
    """Valid ``+1 NPA NXX`` prefixes of the Dallas-area codes, weighted by how common each code is.

    Checked once per process with ``crm.phones.normalize``: US validity is decided by the
    area code and exchange, so every line number under a valid prefix is valid too.
    """
    prefixes: list[str] = []
    for area, weight in (("214", 3), ("469", 3), ("972", 3), ("817", 1)):
        valid = [
            f"+1{area}{ex}"
            for ex in range(200, 1000)
            if ex % 100 != 11 and normalize(f"+1{area}{ex}4821") == f"+1{area}{ex}4821"
        ]
        prefixes += valid * weight
    return tuple(prefixes)


@lru_cache(maxsize=4)
def _tagged_pool(today: date) -> tuple[tuple[str, ...], ...]:
    """Tag each complaint of the pool once (per process and clinic day)."""
    from crm.triage import tag_complaint  # loads medspaCy: only when seeding

    return tuple(tuple(tag_complaint(text, today=today)) for text in COMPLAINTS)


def _ensure_reference(first: date, last: date, echo: Callable[[str], Any]) -> dict[str, list[int]]:
    """Create what is missing of staff, practices, settings and holidays; return staff ids by role."""
    existing = set(db.session.scalars(sa.select(User.email)))
    missing_demo = [d for d in DEMO_LOGINS if d[0] not in existing]
    missing_extra = [s for s in EXTRA_STAFF if s[0] not in existing]
    if missing_demo or missing_extra:
        hashes = {pw: _hash_once(pw) for _, _, _, pw in missing_demo}
        other = _hash_once(secrets.token_urlsafe(24)) if missing_extra else ""
        rows = [{"email": e, "role": r, "name": n, "password_hash": hashes[p]} for e, r, n, p in missing_demo]
        rows += [{"email": e, "role": r, "name": n, "password_hash": other} for e, r, n in missing_extra]
        db.session.execute(sa.insert(User), rows)
        echo(f"staff: created {len(rows)} account(s)")
    names = set(db.session.scalars(sa.select(ReferringPractice.name)))
    practices = [
        {"name": n, "phone": p, "fax": p[:-4] + f"{(int(p[-4:]) + 1) % 10000:04d}", "address": a}
        for n, p, a in PRACTICES
        if n not in names
    ]
    if practices:
        db.session.execute(sa.insert(ReferringPractice), practices)
    if db.session.get(ClinicSettings, 1) is None:
        db.session.execute(sa.insert(ClinicSettings).values(id=1))
    days = set(db.session.scalars(sa.select(Holiday.day)))
    holidays = [{"day": d, "name": n} for d, n in federal_holidays(first, last) if d not in days]
    if holidays:
        db.session.execute(sa.insert(Holiday), holidays)
    db.session.commit()
    staff: dict[str, list[int]] = {"front_desk": [], "surgeon": [], "manager": [], "admin": []}
    demo_emails = {e for e, *_ in DEMO_LOGINS} | {e for e, *_ in EXTRA_STAFF}
    for uid, role, email in db.session.execute(
        sa.select(User.id, User.role, User.email).where(User.active).order_by(User.id)
    ):
        if email in demo_emails:
            staff[role].append(uid)
    return staff


# --------------------------------------------------------------------------- the seeder


class _Seeder:
    """Holds the run's state: random source, calendar, ids, staff, and the planned calls."""

    def __init__(self, *, n_leads: int, n_calls: int, seed: int, echo: Callable[[str], Any]) -> None:
        self.rng = random.Random(seed)  # repeatable demo data, nothing secret  # nosec B311
        self.n_leads = n_leads
        self.n_calls = n_calls
        self.echo = echo
        self.w = _Writer()
        now = clock.now().astimezone(UTC).replace(microsecond=0)
        self.end = int(now.timestamp())
        today = now.astimezone(CLINIC_TZ).date()
        self.today = today
        self.holiday_range = (today - timedelta(days=round(MONTHS * 30.44)), today + timedelta(days=365))
        self.counts: dict[str, int] = dict.fromkeys(TABLES, 0)

    # ---- setup

    def prepare(self) -> None:
        first, last = self.holiday_range
        self.staff = _ensure_reference(first, last, self.echo)
        for role in ("front_desk", "surgeon", "manager", "admin"):
            if not self.staff[role]:
                raise RuntimeError(f"no active demo {role} account to attribute work to")
        holidays = set(db.session.scalars(sa.select(Holiday.day)))
        self.cal = _Calendar(first, (self.today - first).days, self.end, holidays)
        self.clock = load_calendar()  # the speed-to-lead clock the intake uses
        self.practice_ids = list(
            db.session.scalars(sa.select(ReferringPractice.id).order_by(ReferringPractice.id))
        )
        self.next_id = {
            t: (db.session.scalar(sa.text(f"SELECT COALESCE(MAX(id), 0) FROM {t}")) or 0) + 1  # noqa: S608  # nosec B608
            for t in TABLES
        }
        self.lead_base = self.next_id["leads"]
        self.used_phones: set[str] = set(
            db.session.scalars(sa.text("SELECT phone FROM leads WHERE phone IS NOT NULL"))
        )
        self.used_phones |= {MAIN_LINE, ADS_LINE}
        self.prefixes = _phone_prefixes()
        self._tag_pool()
        fd = self.staff["front_desk"]
        self.desk_weights = [3] + [2] * (len(fd) - 1)  # the demo front desk does the most

    def this_morning(self) -> None:
        """What the front desk finds on arriving: two urgent web requests and three voicemails.

        They come through the real intake (the public form's and the phone line's own code), so
        the demo's newest leads are tagged, timed and alerted exactly as live ones are.
        """
        from crm.intake import CallEventIn, ContactIn, WebRequestIn, receive_call_event, receive_web_request

        rng, now = self.rng, clock.now()
        lines = {MAIN_LINE: "main"}
        for minutes in (95, 40):
            contact = ContactIn(
                source="web_form",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                phone=self.new_phone(),
                message=COMPLAINTS[rng.choice(self.red)],
                consent={"phone": True, "sms": True, "email": None, "detailed_voicemail": None},
            )
            at = now - timedelta(minutes=minutes)
            receive_web_request(WebRequestIn(contact=contact, submitted_at=at), now=at)
            self.stats["urgent"] += 1
        for minutes in (130, 75, 20):
            event = CallEventIn(
                call_sid=f"CA{rng.getrandbits(128):032x}",
                from_number=self.new_phone(),
                to_number=MAIN_LINE,
                direction="inbound",
                status="no-answer",
                started_at=now - timedelta(minutes=minutes),
                duration_seconds=rng.randint(20, 70),
            )
            receive_call_event(event, lines=lines, now=now - timedelta(minutes=minutes))
            self.missed += 1
        db.session.commit()
        self.counts["leads"] += 5
        self.counts["calls"] += 3
        self.stats["open"] += 5

    def new_phone(self) -> str:
        """Return a valid, unused Dallas-area number."""
        rng = self.rng
        while True:
            phone = f"{rng.choice(self.prefixes)}{rng.randrange(10000):04d}"
            if phone not in self.used_phones:
                self.used_phones.add(phone)
                return phone

    def _tag_pool(self) -> None:
        """Tag each text of the pool once; split it into red-flag and ordinary texts."""
        self.tags = _tagged_pool(self.today)
        self.red = [i for i, tags in enumerate(self.tags) if any(t.startswith("red_flag:") for t in tags)]
        self.plain = [i for i in range(len(COMPLAINTS)) if i not in set(self.red)]
        if not self.red:
            raise RuntimeError("the tagger found no red flag in the pool: urgent leads need one")
        self.echo(f"complaints: {len(COMPLAINTS)} texts tagged once ({len(self.red)} with a red flag)")

    def take(self, table: str) -> int:
        i = self.next_id[table]
        self.next_id[table] = i + 1
        self.counts[table] += 1
        return i

    def desk(self) -> int:
        return self.rng.choices(self.staff["front_desk"], weights=self.desk_weights, k=1)[0]

    # ---- leads

    def run_leads(self) -> None:
        rng, cal = self.rng, self.cal
        n = self.n_leads
        sources = rng.choices(
            ("phone", "web_form", "referral", "walk_in", "import", "api"),
            weights=(55, 30, 8, 3, 2.5, 1.5),
            k=n,
        )
        phone_times = iter(sorted(cal.draw(cal.cum_calls, rng, sum(s == "phone" for s in sources))))
        web_times = iter(sorted(cal.draw(cal.cum_web, rng, sum(s in ("web_form", "api") for s in sources))))
        staff_times = iter(
            sorted(cal.draw(cal.cum_staff, rng, sum(s in ("referral", "walk_in", "import") for s in sources)))
        )
        planned = []
        for s in sources:
            it = phone_times if s == "phone" else web_times if s in ("web_form", "api") else staff_times
            planned.append((next(it), s))
        planned.sort()
        # Per-lead facts the call plan needs later (index = lead id - base).
        self.lead_phone: list[str | None] = []
        self.lead_line: list[str] = []
        self.lead_owner: list[int | None] = []
        self.lead_text: list[int] = []
        self.lead_nap: list[bool] = []
        self.calls: list[int] = []  # packed plan: epoch << 48 | (lead index + 1) << 8 | flags
        self.follow: list[tuple[int, int, int]] = []  # (lead index, from, to) windows for follow-ups
        self.follow_w: list[float] = []
        self.holders: list[int] = []  # recent leads that hold their phone's open key
        self.closed_pool: list[int] = []  # closed leads whose phone is free for a returning patient
        self.lead_info: list[tuple[str, str, str | None, int]] = []  # first, last, email, closed_at
        self.stats = {"urgent": 0, "closed": 0, "open": 0}
        self.buf: dict[str, list[tuple[Any, ...]]] = {}
        for i, (created, source) in enumerate(planned):
            self.make_lead(i, created, source)
            self.counts["leads"] += 1
            if (i + 1) % CHUNK == 0 or i + 1 == n:
                self.flush()
                self.echo(f"leads: {i + 1:,}/{n:,}")

    def flush(self) -> None:
        order = (
            ("leads", LEAD_COLS),
            ("stage_changes", STAGE_COLS),
            ("lead_tags", TAG_COLS),
            ("tag_changes", TAG_CHANGE_COLS),
            ("lead_search_terms", TERM_COLS),
            ("notes", NOTE_COLS),
            ("tasks", TASK_COLS),
            ("appointments", APPT_COLS),
            ("appointment_requests", REQUEST_COLS),
            ("consents", CONSENT_COLS),
        )
        for table, cols in order:
            rows = self.buf.pop(table, [])
            if rows:
                self.w.write(table, cols, rows)
        db.session.commit()

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.buf.setdefault(table, []).append(row)

    def plan_call(self, t: int, idx: int, flags: int) -> None:
        if t < self.end:
            self.calls.append((t << 48) | ((idx + 1) << 8) | flags)

    def make_lead(self, idx: int, created: int, source: str) -> None:
        rng, cal, ts = self.rng, self.cal, self.w.ts
        lead_id = self.lead_base + idx
        end = self.end

        # Who: a new person, the same person again (merged duplicate), someone else in a
        # household on the same phone (possible duplicate), or a former patient returning.
        kind = _pick(rng, (("new", 960), ("duplicate", 12), ("household", 10), ("returning", 18)))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email_given = rng.random() < 0.6
        merged_into = possible_dup = None
        phone = None
        if kind in ("duplicate", "household") and self.holders:
            prior = rng.choice(self.holders[-300:])
            phone = self.lead_phone[prior]
            p_first, p_last, p_email, _ = self.lead_info[prior]
            if kind == "duplicate":
                first, last, email_given = p_first, p_last, p_email is not None
                merged_into = self.lead_base + prior
            else:
                last = p_last
                possible_dup = self.lead_base + prior
        elif kind == "returning" and self.closed_pool:
            prior = rng.choice(self.closed_pool[-2000:])
            p_first, p_last, p_email, closed_at = self.lead_info[prior]
            if closed_at < created:
                phone = self.lead_phone[prior]
                first, last = p_first, p_last
                self.closed_pool.remove(prior)
        if phone is None:
            kind = "new"
            phone = self.new_phone()
            merged_into = possible_dup = None
        email = None
        if email_given:
            sep = rng.choice((".", "", "_"))
            local = f"{fold(first)}{sep}{fold(last)}".replace(" ", "").replace("'", "")
            if rng.random() < 0.5:
                local += str(rng.randrange(1, 99))
            email = f"{local}@{_pick(rng, EMAIL_DOMAINS)}"

        not_a_patient = source in ("phone", "walk_in") and kind == "new" and rng.random() < 0.025
        urgent_text = not not_a_patient and rng.random() < 0.011
        text = -1 if not_a_patient else rng.choice(self.red if urgent_text else self.plain)
        if kind == "duplicate" and self.lead_text[prior] >= 0:
            text = self.lead_text[prior]
        tags = list(self.tags[text]) if text >= 0 else []
        urgent = any(t.startswith("red_flag:") for t in tags)

        # How far this lead gets, and whether it is closed there.
        close_reason = None
        if not_a_patient:
            furthest = rng.choice((0, 1))
        elif kind == "duplicate":
            furthest, close_reason = 0, "duplicate"
        elif urgent:
            furthest = _pick(rng, ((1, 40), (5, 20), (6, 15), (7, 10), (8, 15)))
            if furthest == 1:
                close_reason = "referred_to_er"
        else:
            furthest = rng.choices(range(9), weights=FUNNEL_WEIGHTS, k=1)[0]
            if rng.random() < CLOSE_CHANCE[furthest]:
                close_reason = _pick(rng, CLOSE_REASONS_BY_STAGE[furthest])
        needs_contact = furthest >= 1 and close_reason != "duplicate"

        # Line and campaign.
        line = ADS_LINE if source == "phone" and rng.random() < 0.22 else MAIN_LINE
        campaign = landing = referrer = utm_source = utm_medium = utm_campaign = None
        practice = None
        if source == "phone":
            campaign = LINE_CAMPAIGN[line]
        elif source == "web_form":
            channel = _pick(rng, (("google", 45), ("facebook", 15), ("mailer", 10), ("organic", 30)))
            page = rng.choice(
                ("/back-spasms/", "/herniated-disc/", "/spinal-stenosis/", "/request-appointment/")
            )
            landing = SITE + page
            if channel == "google":
                campaign, utm_source, utm_medium = "google-ads", "google", "cpc"
                utm_campaign = rng.choice(("back-spasm-search", "herniated-disc-search", "sciatica-search"))
                referrer = "https://www.google.com/"
            elif channel == "facebook":
                campaign, utm_source, utm_medium, utm_campaign = (
                    "facebook",
                    "facebook",
                    "paid-social",
                    "back-pain-relief",
                )
                referrer = "https://m.facebook.com/"
            elif channel == "mailer":
                campaign, utm_source, utm_medium = "mailer", "mailer", "print"
                utm_campaign = rng.choice(("postcard-spring", "postcard-fall"))
                landing = SITE + "/mailer/"
            else:
                referrer = rng.choice(("https://www.google.com/", "https://www.bing.com/", None))
        elif source == "referral":
            practice = rng.choice(self.practice_ids)
        elif source == "walk_in":
            campaign = "mailer" if rng.random() < 0.2 else None
        elif source == "import":
            campaign = "spreadsheet-import"
        else:
            campaign = "website-chat"

        # First contact: the intake call, then call-back attempts until someone answers.
        t_contact, first_attempt, contact_by, last_attempt = self.contact(
            idx, source, created, needs_contact, line
        )
        owner = contact_by if t_contact is not None and rng.random() < 0.92 else None
        if t_contact is None and rng.random() < 0.3:
            owner = self.desk()
        owner = owner or (self.desk() if rng.random() < 0.1 else None)

        # The stage path, with its times; cut at "now".
        facts = self.facts(tags, furthest)
        moves = self.path(
            created,
            source,
            furthest,
            close_reason,
            urgent,
            t_contact,
            last_attempt,
            owner,
            facts,
            may_go_stale=not not_a_patient,
        )
        stage, at = moves[-1][0], moves[-1][1]
        if t_contact is None:
            # A lead reopened because the patient called back was spoken with then: that call is
            # its first contact (otherwise it would sit in the queue as overdue for months).
            t_contact = next((m[1] for m in moves if m[5] == "closed" and m[0] != "closed"), None)
        closed = stage == "closed"
        closed_from = next((m[5] for m in reversed(moves) if m[0] == "closed"), None) if closed else None
        reason_code = moves[-1][3] if closed else None
        reached = {m[0] for m in moves}
        ever_review = any(OPEN_STAGES.index(s) >= REVIEW for s in reached if s != "closed")
        current_index = OPEN_STAGES.index(stage) if not closed else OPEN_STAGES.index(closed_from)
        surgeon = None
        if ever_review and current_index >= REVIEW:
            surgeon = rng.choice(self.staff["surgeon"])
            if stage == "surgical_review" and rng.random() < 0.15:
                surgeon = None  # an unassigned referral: every surgeon sees it
        if merged_into is not None and not closed:  # not merged yet: staff still have to decide
            possible_dup, merged_into = merged_into, None
        # Clinical facts only as far as the lead really got.
        if "physical_therapy" not in reached and "history:failed_pt" not in tags and not facts["staff_tag"]:
            facts["pt_weeks"] = facts["pt_helped"] = None
        if stage == "physical_therapy":
            facts["pt_helped"] = None
        if closed and reason_code == "resolved_conservatively":
            facts["pt_helped"] = True if facts["pt_weeks"] else None
            facts["conservative_care_helped"] = True
        if "evaluation" not in reached and not ever_review and not facts["imaging_mentioned"]:
            facts["imaging_type"] = facts["imaging_date"] = facts["imaging_finding"] = None

        merged = merged_into is not None
        in_queue = not closed and not not_a_patient and not merged
        open_key = phone if not closed and not merged and possible_dup is None else None
        if open_key:
            self.holders.append(idx)
        if closed and not merged and possible_dup is None:  # its phone is free for a returning patient
            self.closed_pool.append(idx)
        # Once someone has spoken with a red-flag patient, a person usually clears the flag (with a note).
        cleared_at = None
        if urgent and t_contact is not None:
            cleared_at = min(t_contact + rng.randint(300, 3600), self.end - 1)
        self.stats["urgent"] += urgent and cleared_at is None
        self.stats["closed" if closed else "open"] += 1

        dob = None
        if rng.random() < 0.45:
            age = int(rng.triangular(22, 86, 56))
            born = self.today - timedelta(days=age * 365 + rng.randrange(365))
            dob = born.isoformat()
        pref = (
            _pick(rng, (("phone", 70), ("sms", 20), ("email", 10))) if email else rng.choice(("phone", "sms"))
        )
        consent_phone = not rng.random() < 0.02  # a few opt out of calls
        consent_sms = _pick(rng, ((True, 55), (False, 20), (None, 25)))
        consent_email = (rng.random() < 0.7) if email else None
        consent_vm = _pick(rng, ((True, 45), (False, 15), (None, 40)))
        last_activity = max(at, t_contact or 0, last_attempt or 0, created)
        due = None  # cleared at first contact, as intake does
        if t_contact is None:
            arrived = datetime.fromtimestamp(created, UTC)
            due = int(add_business_minutes(arrived, self.clock.target_minutes, self.clock).timestamp())
        lang = _pick(rng, LANGUAGES)

        self.add(
            "leads",
            (
                lead_id,
                first,
                last,
                phone,
                phone[-7:],
                phone[-4:],
                open_key,
                email,
                dob,
                pref,
                _pick(rng, PREFERRED_TIMES),
                lang,
                source,
                campaign,
                landing,
                referrer,
                utm_source,
                utm_medium,
                utm_campaign,
                practice,
                _pick(rng, INSURANCE),
                owner,
                surgeon,
                stage,
                ts(at),
                reason_code,
                closed_from,
                in_queue,
                urgent and cleared_at is None,
                not_a_patient,
                _pick(rng, NOT_A_PATIENT) if not_a_patient else None,
                merged_into,
                possible_dup,
                facts["imaging_type"],
                facts["imaging_date"],
                facts["imaging_finding"],
                facts["pt_weeks"],
                facts["pt_helped"],
                facts["medications"],
                facts["injections"],
                facts["chiropractic"],
                facts["conservative_care_helped"],
                consent_phone,
                consent_sms,
                consent_email,
                consent_vm,
                ts(created),
                ts(last_activity),
                ts(last_activity),
                ts(first_attempt),
                ts(t_contact),
                ts(due),
                1 + len(moves),
            ),
        )
        prev = None
        for to, t, actor, close_code, reason, _from, override in moves:
            self.add(
                "stage_changes",
                (self.take("stage_changes"), lead_id, prev, to, actor, ts(t), reason, close_code, override),
            )
            prev = to
        for term in search_terms(first, last):
            self.add("lead_search_terms", (self.take("lead_search_terms"), lead_id, term))
        self.tag_rows(lead_id, source, tags, created, facts, owner)

        # Where the words were written down, and the form submission itself.
        words = COMPLAINTS[text] if text >= 0 else None
        if words and source in ("referral", "walk_in", "import", "api"):
            author = None if source == "api" else self.desk()
            prefix = {"referral": "Referral note: ", "walk_in": "Walk-in, says: ", "import": "Imported: "}
            self.add(
                "notes",
                (self.take("notes"), lead_id, author, prefix.get(source, "") + words, ts(created + 5)),
            )
        if cleared_at is not None:
            author = contact_by or owner or self.desk()
            self.add(
                "notes", (self.take("notes"), lead_id, author, rng.choice(URGENT_CLEARED), ts(cleared_at))
            )
        if rng.random() < 0.25 and at > created + 3600:
            t_note = created + rng.randrange(3600, at - created)
            self.add(
                "notes",
                (self.take("notes"), lead_id, owner or self.desk(), rng.choice(STAFF_NOTES), ts(t_note)),
            )
        if source == "web_form":
            self.form_request(
                lead_id,
                created,
                first,
                last,
                phone,
                email,
                words,
                tags,
                landing,
                referrer,
                (utm_source, utm_medium, utm_campaign),
                (consent_phone, consent_sms, consent_email, consent_vm),
            )
        self.pipeline_rows(lead_id, moves, owner, surgeon, facts)

        self.lead_phone.append(phone)
        self.lead_line.append(line)
        self.lead_owner.append(owner)
        self.lead_text.append(text)
        self.lead_nap.append(not_a_patient)
        self.lead_info.append((first, last, email, at if closed else end + 1))
        # Repeat callers, and the window in which follow-up calls happen.
        life_end = at if closed else end
        if not merged and rng.random() < 0.05:
            for _ in range(rng.randint(1, 3) if source == "phone" else rng.randint(2, 4)):
                t = cal.within(cal.cum_calls, created + 600, min(life_end, created + 45 * 86400), rng)
                if t is not None:
                    outcome = (
                        ANSWERED
                        if cal.is_open(t) and rng.random() < 0.65
                        else _pick(rng, ((VOICEMAIL, 55), (NO_ANSWER, 25), (CANCELED, 15), (BUSY, 5)))
                    )
                    self.plan_call(t, idx, (outcome << 1) | (REPEAT << 4))
        if t_contact is not None and life_end > t_contact + 86400 and not merged:
            span = life_end - t_contact
            self.follow.append((idx, t_contact + 3600, life_end))
            self.follow_w.append(min(span / 86400, 120) * (1 + current_index / 2))

    def contact(
        self, idx: int, source: str, created: int, needs_contact: bool, line: str
    ) -> tuple[int | None, int | None, int | None, int | None]:
        """Plan the intake call and call-back attempts; return (contact, first attempt, who, last attempt)."""
        rng, cal = self.rng, self.cal
        if source == "walk_in":
            return created, None, self.desk(), None
        if source == "phone":
            open_now = cal.is_open(created)
            if open_now and rng.random() < (0.72 if needs_contact else 0.3):
                self.plan_call(created, idx, (ANSWERED << 1) | (INTAKE << 4))
                return created, None, self.desk(), None
            missed = _pick(rng, ((VOICEMAIL, 55), (NO_ANSWER, 25), (CANCELED, 15), (BUSY, 5)))
            self.plan_call(created, idx, (missed << 1) | (INTAKE << 4))
        fails = _pick(rng, ((0, 55), (1, 25), (2, 14), (3, 6))) if needs_contact else 3
        t = created
        first = last = None
        for k in range(fails + (1 if needs_contact else 0)):
            if k == 0:
                delay = _pick(rng, ((1200, 45), (7200, 30), (28800, 15), (172800, 10)))
                ta = cal.staff_time(cal.opening(t) + 60, cal.opening(t) + delay, rng)
            else:
                ta = cal.staff_time(t + 7200, t + 2 * 86400, rng)
            if ta >= self.end:
                break
            ok = needs_contact and k == fails
            outcome = ANSWERED if ok else _pick(rng, ((NO_ANSWER, 60), (VOICEMAIL, 30), (BUSY, 10)))
            self.plan_call(ta, idx, OUT | (outcome << 1) | (ATTEMPT << 4))
            first = first or ta
            last = t = ta
            if ok:
                return ta, first, self.desk(), last
        return None, first, None, last

    def facts(self, tags: list[str], furthest: int) -> dict[str, Any]:
        """Clinical facts consistent with the tags (trimmed later to how far the lead got)."""
        rng = self.rng
        upper = "region:upper" in tags
        condition = (
            "condition:stenosis"
            if "condition:stenosis" in tags
            else ("condition:herniated_disc" if "condition:herniated_disc" in tags else None)
        )
        level = rng.choice(("C5-C6", "C6-C7", "C4-C5")) if upper else rng.choice(("L4-L5", "L5-S1", "L3-L4"))
        findings = {
            "condition:stenosis": f"Moderate central canal stenosis at {level}",
            "condition:herniated_disc": f"{rng.choice(('Disc bulge', 'Disc herniation', 'Disc protrusion'))} "
            f"at {level} {rng.choice(('contacting the nerve root', 'with foraminal narrowing', ''))}".strip(),
        }
        finding = findings.get(condition or "", f"Mild degenerative changes at {level}, no herniation")
        failed_pt = "history:failed_pt" in tags
        imaging = furthest >= 4 or (condition is not None and rng.random() < 0.5)
        return {
            "imaging_type": _pick(rng, (("MRI", 75), ("X-ray", 15), ("CT", 10))) if imaging else None,
            "imaging_date": (self.today - timedelta(days=rng.randrange(20, 400))).isoformat()
            if imaging
            else None,
            "imaging_finding": finding if imaging else None,
            "imaging_mentioned": condition is not None and imaging and furthest < 4,
            "pt_weeks": rng.randint(4, 12) if failed_pt or furthest >= 3 else None,
            "pt_helped": False if failed_pt or furthest >= 4 else None,
            "medications": rng.choice(MEDICATIONS) if rng.random() < 0.6 else None,
            "injections": "Epidural steroid injection" if furthest >= 4 and rng.random() < 0.3 else None,
            "chiropractic": "Several visits, temporary relief" if rng.random() < 0.15 else None,
            "conservative_care_helped": None,
            "gate": failed_pt or condition is not None or any(t.startswith("red_flag:") for t in tags),
            "staff_tag": None,
        }

    def path(
        self,
        created: int,
        source: str,
        furthest: int,
        close_reason: str | None,
        urgent: bool,
        t_contact: int | None,
        last_attempt: int | None,
        owner: int | None,
        facts: dict[str, Any],
        *,
        may_go_stale: bool,
    ) -> list[tuple[str, int, int | None, str | None, str | None, str | None, bool]]:
        """Plan the stage changes: (to, at, actor, close reason, reason, from, override), cut at now."""
        rng, cal = self.rng, self.cal
        desk = owner or self.desk()
        intake_actor = self.desk() if source in ("walk_in", "import", "referral") else None
        moves: list[Any] = [("new", created, intake_actor, None, None, None, False)]
        plan: list[tuple[int, str | None]] = []  # (stage index, reason)
        if t_contact is not None:
            for k in range(1, furthest + 1):
                if k == furthest or k >= REVIEW or (k == 1 and furthest == 2):
                    plan.append((k, None))
                elif k == 1:
                    if rng.random() < 0.9:
                        plan.append((k, None))
                elif not urgent and rng.random() < (0.8, 0.7, 0.65)[k - 2]:
                    plan.append((k, None))
            if plan and plan[0][0] > 2:
                plan.insert(0, (1, None))
            # Some go back a step, with a reason, then forward again.
            if not urgent and furthest >= 4 and rng.random() < 0.08:
                ks = [k for k, _ in plan]
                if REVIEW in ks:
                    at = ks.index(REVIEW) + 1
                    plan[at:at] = [
                        (2, "Surgeon: try six more weeks of PT before surgery."),
                        (3, None),
                        (REVIEW, None),
                    ]
                else:
                    at = ks.index(4) + 1
                    plan[at:at] = [
                        (3, "MRI waiting on insurance approval; continue PT meanwhile."),
                        (4, None),
                    ]
        t = t_contact or created
        stage_idx = 0
        for k, reason in plan:
            if k == 1:
                t = t + rng.randint(120, 900)
                actor = desk
            elif k in (6, 7) and reason is None and stage_idx in (5, 6):
                if k == 6:  # the surgeon accepts, with a consult date
                    t = cal.staff_time(t + 3600, t + 7 * 86400, rng)
                    facts["consult_at"] = cal.staff_time(t + 5 * 86400, t + 25 * 86400, rng)
                else:  # the consult happened; its outcome is recorded
                    t = facts["consult_at"] + rng.randint(3600, 86400)
                actor = rng.choice(self.staff["surgeon"])
            else:
                lo, hi = STAGE_GAP_DAYS.get(k, (1, 10))
                if reason is not None or k < stage_idx:
                    lo, hi = 1, 5
                t = cal.staff_time(t + lo * 86400 + 600, t + hi * 86400 + 3600, rng)
                actor = rng.choice(self.staff["surgeon"]) if reason and reason.startswith("Surgeon") else desk
            override = False
            if k == REVIEW and stage_idx < REVIEW and not facts["gate"]:
                fix = _pick(rng, (("care_failed", 70), ("staff_tag", 20), ("override", 10)))
                if fix == "override":
                    override, actor = True, self.staff["manager"][0]
                    reason = "Manager override: severe pain, imaging ordered, patient cannot wait."
                elif fix == "staff_tag":
                    facts["staff_tag"] = (t - 600, desk)
                    facts["pt_weeks"], facts["pt_helped"] = rng.randint(6, 12), False
                else:
                    facts["conservative_care_helped"] = False
                facts["gate"] = True
            if k == 8:
                actor = rng.choice((desk, rng.choice(self.staff["surgeon"])))
            moves.append((OPEN_STAGES[k], t, actor, None, reason, OPEN_STAGES[stage_idx], override))
            stage_idx = k
        window = (2, 45)
        if close_reason is None and may_go_stale and stage_idx < 8 and (stage_idx < 6 or rng.random() < 0.85):
            # Leads don't sit in a stage forever: most are closed well past its aging limit
            # (those whose limit is still ahead are cut off by "now" below and stay open).
            limit = STALE_DAYS[stage_idx]
            close_reason, window = _pick(rng, CLOSE_REASONS_BY_STAGE[stage_idx]), (limit, 3 * limit)
        if close_reason is not None:
            frm = OPEN_STAGES[stage_idx]
            if close_reason == "duplicate":
                tc = created + rng.randint(600, 3 * 86400)
                actor = desk
            elif close_reason == "referred_to_er":
                tc = t + rng.randint(60, 600)
                actor = desk
            elif close_reason == "no_response" and stage_idx == 0:
                if t_contact is None and last_attempt is None:
                    tc = cal.staff_time(created + 5 * 86400, created + 10 * 86400, rng)
                else:
                    base = last_attempt or created
                    tc = cal.staff_time(base + 3 * 86400, base + 8 * 86400, rng)
                actor = desk
            else:
                tc = cal.staff_time(t + window[0] * 86400, t + window[1] * 86400, rng)
                actor = rng.choice(self.staff["surgeon"]) if stage_idx == REVIEW else desk
            moves.append(("closed", tc, actor, close_reason, CLOSE_TEXT[close_reason], frm, False))
            if (
                close_reason in ("no_response", "went_elsewhere", "resolved_conservatively")
                and rng.random() < 0.05
            ):
                tr = cal.staff_time(tc + 14 * 86400, tc + 120 * 86400, rng)
                moves.append(
                    (frm, tr, desk, None, "Patient called back and wants to continue.", "closed", False)
                )
                if rng.random() < 0.5:
                    again = "went_elsewhere" if rng.random() < 0.5 else "resolved_conservatively"
                    t2 = cal.staff_time(tr + 7 * 86400, tr + 40 * 86400, rng)
                    moves.append(("closed", t2, desk, again, CLOSE_TEXT[again], frm, False))
        # Cut at now, and keep times strictly increasing.
        out = [moves[0]]
        for m in moves[1:]:
            at = max(m[1], out[-1][1] + 60)
            if at >= self.end:
                break
            out.append((m[0], at, *m[2:]))
        return [(m[0], m[1], m[2], m[3], m[4], m[5], m[6]) for m in out]

    def tag_rows(
        self,
        lead_id: int,
        source: str,
        tags: list[str],
        created: int,
        facts: dict[str, Any],
        owner: int | None,
    ) -> None:
        """Write the automatic tags (the form's own answers as the patient's), and staff edits."""
        rng, ts = self.rng, self.w.ts
        t = ts(created + 2)
        form_codes = ("region:", "side:", "history:failed_pt")
        removable = [c for c in tags if c.split(":")[0] in ("side", "duration", "nonspinal", "radiating")]
        removed = rng.choice(removable) if removable and rng.random() < 0.03 else None
        for code in tags:
            origin = "patient" if source == "web_form" and code.startswith(form_codes) else "auto"
            if code == removed:
                t_rm = ts(min(self.end - 1, created + rng.randint(3600, 7 * 86400)))
                who = owner or self.desk()
                self.add(
                    "lead_tags", (self.take("lead_tags"), lead_id, code, origin, "removed", who, t, t_rm)
                )
                self.add("tag_changes", (self.take("tag_changes"), lead_id, code, "added", origin, None, t))
                self.add(
                    "tag_changes", (self.take("tag_changes"), lead_id, code, "removed", "staff", who, t_rm)
                )
                continue
            self.add("lead_tags", (self.take("lead_tags"), lead_id, code, origin, "active", None, t, t))
            self.add("tag_changes", (self.take("tag_changes"), lead_id, code, "added", origin, None, t))
        if facts.get("staff_tag") and "history:failed_pt" not in tags:
            at, who = facts["staff_tag"]
            self.add(
                "lead_tags",
                (
                    self.take("lead_tags"),
                    lead_id,
                    "history:failed_pt",
                    "staff",
                    "active",
                    who,
                    ts(at),
                    ts(at),
                ),
            )
            self.add(
                "tag_changes",
                (self.take("tag_changes"), lead_id, "history:failed_pt", "added", "staff", who, ts(at)),
            )

    def pipeline_rows(
        self, lead_id: int, moves: list[Any], owner: int | None, surgeon: int | None, facts: dict[str, Any]
    ) -> None:
        """Tasks and appointments that go with the stage history."""
        rng, ts, cal = self.rng, self.w.ts, self.cal
        stages = [m[0] for m in moves]
        final = stages[-1]
        for i, m in enumerate(moves):
            to, at, actor = m[0], m[1], m[2]
            later = stages[i + 1 :]
            if to == "surgical_review" and m[5] != "closed":
                due = cal.staff_time(at + 3600, at + 86400, rng)
                done = bool(later)
                done_at = min(moves[i + 1][1] - 30, due + 3600) if done else None
                self.add(
                    "tasks",
                    (
                        self.take("tasks"),
                        lead_id,
                        None,
                        "send_records",
                        "Send records to the surgeon",
                        ts(due),
                        owner,
                        None,
                        ts(at),
                        actor,
                        ts(done_at),
                        owner or actor if done_at else None,
                    ),
                )
                if rng.random() < 0.1:
                    ask = at + rng.randint(3600, 2 * 86400)
                    if ask < self.end:
                        who = surgeon or rng.choice(self.staff["surgeon"])
                        fin = ts(moves[i + 1][1] - 10) if later else None
                        self.add(
                            "tasks",
                            (
                                self.take("tasks"),
                                lead_id,
                                None,
                                "more_info",
                                "Surgeon asks for the PT notes",
                                ts(ask + 2 * 86400),
                                owner,
                                None,
                                ts(ask),
                                who,
                                fin,
                                owner if fin else None,
                            ),
                        )
            if to == "consult_scheduled" and m[5] != "closed":
                doc = surgeon or actor
                consult = facts["consult_at"]
                nxt = moves[i + 1] if later else None
                if nxt is None:
                    outcome = None  # upcoming, or not recorded yet
                elif nxt[0] == "consult_completed":
                    outcome = "attended"
                else:
                    outcome = rng.choice(("no_show", "canceled"))
                if outcome == "attended" and rng.random() < 0.08:
                    first_try = consult - 7 * 86400
                    if first_try > at:
                        self.add(
                            "appointments",
                            (
                                self.take("appointments"),
                                lead_id,
                                "consult",
                                ts(first_try),
                                doc,
                                "Plano clinic, Suite 200",
                                "rescheduled",
                                None,
                                ts(at),
                                actor,
                            ),
                        )
                self.add(
                    "appointments",
                    (
                        self.take("appointments"),
                        lead_id,
                        "consult",
                        ts(consult),
                        doc,
                        "Plano clinic, Suite 200",
                        outcome,
                        None,
                        ts(at),
                        actor,
                    ),
                )
                self.add(
                    "tasks",
                    (
                        self.take("tasks"),
                        lead_id,
                        None,
                        "schedule",
                        "Confirm the consult with the patient",
                        ts(at + 86400),
                        owner,
                        None,
                        ts(at),
                        actor,
                        ts(min(at + rng.randint(600, 80000), self.end - 1)),
                        owner or actor,
                    ),
                )
            if to == "surgery_scheduled" and final == "surgery_scheduled":
                day = at + rng.randint(10, 45) * 86400
                op = cal.staff_time(day - 86400, day, rng) if day < self.end else day
                outcome = "attended" if op < self.end else None
                fusion = "Lumbar fusion" if rng.random() < 0.7 else "Cervical fusion"
                self.add(
                    "appointments",
                    (
                        self.take("appointments"),
                        lead_id,
                        "surgery",
                        ts(op),
                        surgeon or actor,
                        "Medical City Plano, OR 3",
                        outcome,
                        fusion,
                        ts(at),
                        actor,
                    ),
                )

    def form_request(
        self,
        lead_id: int,
        created: int,
        first: str,
        last: str,
        phone: str,
        email: str | None,
        words: str | None,
        tags: list[str],
        landing: str | None,
        referrer: str | None,
        utm: tuple[str | None, str | None, str | None],
        consent: tuple[bool | None, ...],
    ) -> None:
        """Store the form submission as the patient typed it, with its consents."""
        rng, ts = self.rng, self.w.ts
        d = phone[2:]
        typed = rng.choice(
            (f"({d[:3]}) {d[3:6]}-{d[6:]}", f"{d[:3]}-{d[3:6]}-{d[6:]}", d, f"{d[:3]}.{d[3:6]}.{d[6:]}")
        )
        where = [t.split(":")[1] for t in tags if t.startswith("region:")]
        side = [t.split(":")[1] for t in tags if t.startswith("side:")]
        answers = {
            "where": where,
            "side": "both" if len(side) == 2 else (side[0] if side else "not_sure"),
            "tried_pt": "did_not_help"
            if "history:failed_pt" in tags
            else rng.choice(("no", "helped", "in_progress")),
            "bladder_or_bowel": "yes" if "red_flag:bowel_bladder" in tags else "no",
            "leg_weakness": "yes" if "red_flag:weakness" in tags else "no",
            "consent_phone": bool(consent[0]),
            "consent_sms": bool(consent[1]),
            "consent_email": bool(consent[2]),
        }
        ip = f"{rng.choice(('198.51.100', '203.0.113', '192.0.2'))}.{rng.randrange(1, 255)}"
        self.add(
            "appointment_requests",
            (
                self.take("appointment_requests"),
                lead_id,
                ts(created),
                first,
                last,
                typed,
                email,
                words,
                json.dumps(answers),
                "2025-01",
                ip,
                landing,
                referrer,
                *utm,
            ),
        )
        for channel, granted in zip(("phone", "sms", "email", "detailed_voicemail"), consent, strict=True):
            if granted is not None:
                self.add(
                    "consents",
                    (
                        self.take("consents"),
                        lead_id,
                        channel,
                        granted,
                        ts(created),
                        "web_form",
                        "2025-01",
                        ip,
                        None,
                    ),
                )

    # ---- calls

    def plan_rest(self) -> None:
        """Add follow-up and non-lead calls so the total is ``n_calls`` with about 20 % missed."""
        rng, cal = self.rng, self.cal
        n = self.n_calls
        if len(self.calls) > n:
            self.calls = rng.sample(self.calls, n)
        linked_target = max(len(self.calls), round(n * LINKED_SHARE))
        follow_ups = min(linked_target, n) - len(self.calls)
        if follow_ups > 0 and self.follow:
            picks = rng.choices(range(len(self.follow)), weights=self.follow_w, k=follow_ups)
            for p in picks:
                idx, a, b = self.follow[p]
                t = cal.staff_time(a, b, rng)
                outcome = _pick(rng, ((ANSWERED, 68), (NO_ANSWER, 20), (VOICEMAIL, 9), (BUSY, 3)))
                self.plan_call(t, idx, OUT | (outcome << 1) | (FOLLOW_UP << 4))
        rest = n - len(self.calls)
        missed_so_far = sum(1 for k in self.calls if not k & OUT and (k >> 1) & 7 != ANSWERED)
        times = cal.draw(cal.cum_calls, rng, rest)
        outbound = [rng.random() < 0.08 for _ in times]
        inbound_open = sum(1 for t, o in zip(times, outbound, strict=True) if not o and cal.is_open(t))
        inbound_closed = sum(1 for t, o in zip(times, outbound, strict=True) if not o and not cal.is_open(t))
        need = MISSED_TARGET * n - missed_so_far - inbound_closed
        p_missed = min(0.9, max(0.05, need / inbound_open)) if inbound_open else 0.3
        for t, out in zip(times, outbound, strict=True):
            if out:
                outcome = _pick(rng, ((ANSWERED, 75), (NO_ANSWER, 20), (BUSY, 5)))
                flags = OUT | (outcome << 1)
            elif cal.is_open(t) and rng.random() >= p_missed:
                flags = ANSWERED << 1
            else:
                flags = (
                    _pick(rng, ((VOICEMAIL, 50), (NO_ANSWER, 28), (CANCELED, 17), (BUSY, 4), (FAILED, 1)))
                    << 1
                )
            self.calls.append((t << 48) | flags | (UNLINKED << 4))
        self.calls.sort()

    def write_calls(self) -> None:
        """Write the planned calls in time order, with a call-back task for each missed one."""
        rng, cal, ts = self.rng, self.cal, self.w.ts
        pool = [self.new_phone() for _ in range(max(1, min(len(self.calls) // 4, 60_000)))]
        account = f"AC{rng.getrandbits(128):032x}"
        statuses = {
            ANSWERED: "completed",
            NO_ANSWER: "no-answer",
            BUSY: "busy",
            CANCELED: "canceled",
            VOICEMAIL: "completed",
            FAILED: "failed",
        }
        surgeons = self.staff["surgeon"]
        total = len(self.calls)
        mask = (1 << 40) - 1
        call_rows: list[tuple[Any, ...]] = []
        task_rows: list[tuple[Any, ...]] = []
        for n_done, key in enumerate(self.calls, 1):
            t = key >> 48
            slot = (key >> 8) & mask
            flags = key & 255
            out = bool(flags & OUT)
            outcome = (flags >> 1) & 7
            purpose = flags >> 4
            call_id = self.take("calls")
            idx = slot - 1
            i = cal.slot(t)
            hour, wday = cal.hour[i], cal.wday[i]
            disposition = notes = None
            not_patient = False
            if idx >= 0:
                lead_id = self.lead_base + idx
                other = self.lead_phone[idx]
                line = self.lead_line[idx] if not out else MAIN_LINE
                owner = self.lead_owner[idx]
                not_patient = self.lead_nap[idx]
            else:
                lead_id = owner = None
                withheld = not out and rng.random() < 0.03
                other = None if withheld else rng.choice(pool)
                line = ADS_LINE if not out and rng.random() < 0.1 else MAIN_LINE
                not_patient = not withheld
                disposition = (
                    "withheld"
                    if withheld
                    else _pick(
                        rng, (("existing_patient", 70), ("vendor", 10), ("spam", 12), ("wrong_number", 8))
                    )
                )
            answered = outcome == ANSWERED
            voicemail = outcome == VOICEMAIL and not out
            missed = not out and not answered
            if answered:
                duration = int(min(1800, rng.lognormvariate(5.4, 0.6)))
            elif outcome == VOICEMAIL:
                duration = rng.randint(15, 90)
            else:
                duration = rng.randint(0, 25) if outcome == CANCELED else 0
            handled = None
            if answered or out:
                handled = owner if owner and rng.random() < 0.6 else self.desk()
                if out and purpose == FOLLOW_UP and rng.random() < 0.05:
                    handled = rng.choice(surgeons)
            if idx >= 0:
                if answered:
                    disposition = "reached" if out else "new_patient" if purpose == INTAKE else "question"
                elif out:
                    disposition = "left_voicemail" if outcome == VOICEMAIL else "no_answer"
                if purpose == INTAKE and (answered or voicemail) and self.lead_text[idx] >= 0:
                    notes = COMPLAINTS[self.lead_text[idx]]
            recording = (
                f"https://api.twilio.com/2010-04-01/Accounts/{account}/Recordings/RE{rng.getrandbits(128):032x}"
                if voicemail
                else None
            )
            frm, to = (line, other) if out else (other, line)
            call_rows.append(
                (
                    call_id,
                    f"CA{call_id:010x}{rng.getrandbits(88):022x}",
                    lead_id,
                    frm,
                    to,
                    line,
                    LINE_CAMPAIGN[line],
                    "outbound" if out else "inbound",
                    statuses[outcome],
                    3 if answered else 2,
                    ts(t),
                    hour,
                    wday,
                    duration,
                    recording,
                    answered,
                    voicemail,
                    missed,
                    handled,
                    disposition,
                    notes,
                    not_patient,
                    ts(t),
                    ts(t + duration + 5),
                )
            )
            if missed:
                due = cal.opening(t + 900)
                assignee = owner or (self.desk() if rng.random() < 0.7 else None)
                old = t < self.end - 3 * 86400
                done_at = None
                if (old and rng.random() < 0.998) or (not old and rng.random() < 0.5):
                    if rng.random() < 0.7:  # most call-backs are made by their due time
                        room = min(600, due - t - 120) if due == t + 900 else 0  # after hours: at opening
                        done_at = min(self.end - 1, due - rng.randint(0, room))
                    else:
                        done_at = min(self.end - 1, due + rng.randint(300, 26 * 3600))
                kind = "Call back: voicemail" if voicemail else "Call back: missed call"
                task_rows.append(
                    (
                        self.take("tasks"),
                        lead_id,
                        call_id,
                        "callback",
                        kind,
                        ts(due),
                        assignee,
                        1,
                        ts(t),
                        None,
                        ts(done_at),
                        (assignee or self.desk()) if done_at else None,
                    )
                )
            if len(call_rows) >= CALL_CHUNK or n_done == total:
                self.w.write("calls", CALL_COLS, call_rows)
                db.session.commit()
                call_rows = []
                self.echo(f"calls: {n_done:,}/{total:,}")
        for start in range(0, len(task_rows), CALL_CHUNK):
            self.w.write("tasks", TASK_COLS, task_rows[start : start + CALL_CHUNK])
        db.session.commit()
        self.missed = sum(1 for k in self.calls if not k & OUT and (k >> 1) & 7 != ANSWERED)

    def finish(self) -> None:
        """Derived columns that depend on rows written later, sequences, and planner statistics."""
        base = self.lead_base
        conn = db.session.connection()
        conn.execute(
            sa.text(
                "UPDATE leads SET next_task_due_at = t.due FROM (SELECT lead_id, MIN(due_at) AS due "
                "FROM tasks WHERE done_at IS NULL AND lead_id >= :base GROUP BY lead_id) AS t "
                "WHERE t.lead_id = leads.id"
            ),
            {"base": base},
        )
        conn.execute(
            sa.text(
                "UPDATE leads SET last_activity_at = c.last FROM (SELECT lead_id, MAX(started_at) AS last "
                "FROM calls WHERE lead_id >= :base GROUP BY lead_id) AS c "
                "WHERE c.lead_id = leads.id AND c.last > leads.last_activity_at"
            ),
            {"base": base},
        )
        # The first attempt is the first outbound call, whatever its purpose (PRODUCT §2).
        conn.execute(
            sa.text(
                "UPDATE leads SET first_attempt_at = c.first FROM (SELECT lead_id, MIN(started_at) AS first "
                "FROM calls WHERE lead_id >= :base AND direction = 'outbound' GROUP BY lead_id) AS c "
                "WHERE c.lead_id = leads.id"
            ),
            {"base": base},
        )
        if self.w.pg:
            for table in TABLES:
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608  # nosec B608
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
        # The bulk load went past the session's roll-up hooks: count the dashboard's roll-ups anew.
        from crm import rollups

        rollups.rebuild()
        db.session.commit()
        if self.w.pg:
            # VACUUM too: a bulk load leaves the visibility map empty, so index-only reads (the
            # queue's capped counts) visit the table until autovacuum comes by, and autovacuum
            # then does this same work in the first minutes of use. VACUUM runs outside a
            # transaction.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE)")
        else:
            conn = db.session.connection()
            # Whole tables, not a sample: a 1,000-row sample misjudges in_queue as selective.
            conn.exec_driver_sql("ANALYZE")
        db.session.commit()


def seed_demo(*, n_leads: int, n_calls: int, seed: int = 5457, echo: Callable[[str], Any] = print) -> str:
    """Fill the database with demo data; return a one-paragraph summary (counts and time).

    Deterministic for a given seed and day. Safe to re-run: it adds data (see the module
    docstring). No patient data is echoed, only counts.
    """
    started = time.perf_counter()
    # This morning's arrivals (two web requests, three voicemails) are part of the counts asked for.
    morning = n_leads >= 50 and n_calls >= 50
    seeder = _Seeder(n_leads=n_leads - 5 * morning, n_calls=n_calls - 3 * morning, seed=seed, echo=echo)
    raw = seeder.w.raw()
    if not seeder.w.pg:
        raw.execute("PRAGMA cache_size=-262144")  # 256 MB while indexes grow; reset below
    try:
        seeder.prepare()
        seeder.run_leads()
        seeder.plan_rest()
        seeder.write_calls()
        seeder.finish()
        if morning:
            seeder.this_morning()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        if not seeder.w.pg:
            seeder.w.raw().execute("PRAGMA cache_size=-2000")
            db.session.rollback()
    elapsed = time.perf_counter() - started
    c, s = seeder.counts, seeder.stats
    calls = max(1, c["calls"])
    return (
        f"Seeded {c['leads']:,} leads ({s['urgent']:,} urgent, {s['closed']:,} closed, {s['open']:,} open) "
        f"with {c['stage_changes']:,} stage changes, {c['lead_tags']:,} tags, {c['notes']:,} notes, "
        f"{c['tasks']:,} tasks, {c['appointments']:,} appointments and {c['appointment_requests']:,} form "
        f"requests; {c['calls']:,} calls ({seeder.missed if c['calls'] else 0:,} missed, "
        f"{100 * (seeder.missed if c['calls'] else 0) / calls:.1f} %) over {MONTHS} months; "
        f"in {elapsed:.1f} s on {db.engine.dialect.name}."
    )

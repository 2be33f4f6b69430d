"""Target patterns and ConText rules of the complaint tagger, in patients' own vocabulary.

Targets are regular expressions run over the lower-cased text; what surrounds a target
(negation, someone else, hypothetical) is left to medspaCy's ConText, with the clinic-specific
rules below added to its defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # medspaCy is imported only when the pipeline is built (import takes ~0.8 s)
    from medspacy.context import ConTextRule
    from spacy.tokens import Span

DURATION = "DURATION"

_POSS = r"(?:my|the|her|his|their|both|one|a|your)"
_OF = r"\s+of\s+(?:my|the|her|his)"
_SIDE_MOD = (
    rf"(?:(?:left|right|lt|rt|upper|lower|back{_OF}|front{_OF}|side{_OF}|outer|inner|outside{_OF}|"
    r"big|little|both)\s+)*"
)
_LEG = r"(?:legs?|thighs?|calf|calves|shins?|foot|feet|toes?|knees?|ankles?)"
_ARM = r"(?:arms?|hands?|fingers?|thumbs?|pinky|pinkies|forearms?|elbows?|wrists?|biceps?|triceps?)"
_SPREAD = (
    r"(?:goes|going|go|went|gone|shoots?|shooting|shot|radiat\w*|runs?|running|travel\w*|spread\w*|"
    r"mov(?:es?|ing)|extends?|extending|pain|pains|numbness|numb|tingl\w*|burning|aches?|aching|"
    r"electric\w*|zings?|zaps?|pins\s+and\s+needles|sciatic\w*|hurts?|hurting)"
)
_INTO = r"(?:down|into|to|in|through|thru|around)"
_SYMPTOM = (
    r"(?:pain|painful|hurts?|hurting|aches?|aching|numb\w*|tingl\w*|burn\w*|throb\w*|cramp\w*|"
    r"sore|heavy|asleep|pins\s+and\s+needles)"
)
_LINK = (
    r"(?:(?:is|are|feels?|felt|gets?|get|goes|go|went|keeps?|has\s+been|have\s+been|started|start)\s+)?"
    r"(?:\w+\s+){0,2}?"
)
_DISC = r"(?:discs?|disks?)"
_PT = (
    r"(?:physical\s+therap(?:y|ist)|physio(?:therapy|therapist)?|pt|p\.t\.|"
    r"my\s+therapist|(?<!massage\s)(?<!heat\s)(?<!ice\s)(?<!cold\s)(?<!injection\s)(?<!speech\s)"
    r"(?<!talk\s)(?<!hormone\s)(?<!drug\s)(?<!occupational\s)therapy|rehab)"
)
_PT_FAIL = (
    r"(?:no\s+better|not\s+(?:any\s+)?better|(?:did|does|has|have|is|was)\s*(?:n't|\s+not)\s+(?:really\s+)?"
    r"(?:help\w*|work\w*|do\s+(?:anything|much|a\s+thing)|improv\w*|fix\w*|making\s+progress)|"
    r"did\s+nothing|does\s+nothing|done\s+nothing|not\s+help\w*|no\s+help|no\s+relief|"
    r"no\s+improvement|no\s+progress|not\s+improv\w*|no\s+change|not\s+much\s+(?:change|better|help)|"
    r"no\s+difference|made\s+(?:it|me|things)\s+worse|makes?\s+(?:it|me)\s+worse|got\s+worse|worse\s+after|"
    r"helped\s+(?:a\s+(?:little|bit)|some|slightly|a\s+tiny\s+bit)(?:\s+\w+){0,3}\s+but|"
    r"only\s+helped\s+(?:a\s+(?:little|bit)|some)|temporar\w*|still\s+(?:hurts?|have\s+(?:pain|a\s+lot)|"
    r"has\s+pain|in\s+pain|can'?t|cannot|no\s+better|the\s+same)|failed|without\s+(?:much\s+)?(?:relief|"
    r"improvement|success|help|benefit)|not\s+enough|wasn'?t\s+enough|gave\s+up|discharged|"
    r"no\s+luck|useless|waste\s+of|nothing\s+(?:worked|helped|helps|works|changed))"
)

# One pattern per rule keeps each alternative readable; the matcher runs them all.
TARGETS: dict[str, list[str]] = {
    "region:upper": [
        r"\bneck\b",
        r"\bcervical\b(?!\s+(?:cancer|cap|biopsy|screening|mucus))",
        r"\bc[- ]?spine\b",
        r"\bC\s?-?[1-8](?:\s*(?:-|/|–|to)\s*(?:C\s?-?)?[1-8]|\s*-\s*T\s?1)?\b",
        r"\bupper[- ]?back\b",
        r"\bupper\s+(?:and|&|/)\s+(?:mid|middle|lower|low)\s+back\b",
        r"\b(?:mid|middle|lower|low)\s+(?:and|&|/)\s+upper\s+back\b",
        r"\bupper\s+(?:part\s+of\s+(?:my|the|her|his)\s+)?spine\b",
        r"\bshoulder[- ]?blades?\b",
        r"\bwhiplash\b",
        r"\bbase\s+of\s+(?:my|the|her|his)\s+skull\b",
    ],
    "region:mid": [
        r"\bmid(?:dle)?[- ]?back\b",
        r"\bmid(?:dle)?\s+(?:and|&|/)\s+(?:upper|lower|low)\s+back\b",
        r"\bmiddle\s+of\s+(?:my|the|her|his)\s+back\b",
        r"\bthoracic\b(?!\s+outlet)",
        r"\bt[- ]?spine\b",
        r"\bT\s?-?(?:1[0-2]|[1-9])(?:\s*(?:-|/|–|to)\s*(?:[TL]\s?-?)?(?:1[0-2]|[1-9]))?\b",
        r"\bribs?\b",
        r"\brib[- ]?cage\b",
        r"\bbra[- ]?(?:line|strap)\b",
    ],
    "region:lower": [
        r"\blow(?:er)?[- ]?back\b",
        r"\blow(?:er)?\s+(?:part\s+of\s+(?:my|the|her|his)\s+)?spine\b",
        r"\blumbar\b",
        r"\blumbago\b",
        r"\bLBP\b",
        r"\bl[- ]?spine\b",
        r"\bL\s?-?[1-5](?:\s*(?:-|/|–|to)\s*(?:[LS]\s?-?)?[1-5])?\b",
        r"\bS\s?-?1\b",
        r"\bsacr(?:um|al)\b",
        r"\bsacroiliac\b",
        r"\bSI[- ]joints?\b",
        r"\btail[- ]?bone\b",
        r"\bcoccy\w*",
        r"\bsmall\s+of\s+(?:my|the|her|his)\s+back\b",
        r"\b(?:base|bottom)\s+of\s+(?:my|the|her|his)\s+(?:spine|back)\b",
        r"\bbelt[- ]?line\b",
    ],
    "side:left": [],
    "side:right": [],
    "radiating:leg": [
        rf"\b{_SPREAD}\s+(?:\w+\s+){{0,2}}?{_INTO}\s+(?:{_POSS}\s+)?{_SIDE_MOD}{_LEG}\b",
        rf"\b(?:(?:left|right|lt|rt)\s+)?(?:legs?|thighs?|calf|calves|shins?|foot|feet|toes?)\s+{_LINK}{_SYMPTOM}\b",
        rf"\b(?:down|into)\s+(?:to\s+)?(?:{_POSS}\s+)?{_SIDE_MOD}(?:legs?|thighs?|calf|calves|shins?|foot|feet|toes?|knees?)\b",
        r"\bs(?:c|k)?iatt?i(?:c|k)\w*",
        r"\bsciatia\b",
        r"\bclaudication\b",
    ],
    "radiating:arm": [
        rf"\b{_SPREAD}\s+(?:\w+\s+){{0,2}}?{_INTO}\s+(?:{_POSS}\s+)?{_SIDE_MOD}{_ARM}\b",
        rf"\b(?:(?:left|right|lt|rt)\s+)?{_ARM}\s+{_LINK}{_SYMPTOM}\b",
        rf"\b(?:down|into)\s+(?:to\s+)?(?:{_POSS}\s+)?{_SIDE_MOD}{_ARM}\b",
    ],
    "condition:herniated_disc": [
        rf"\b(?:herni\w*|hern[ai]ted|herneated|hernaited|bulg\w*|buldg\w*|bludg\w*|slipp?ed|ruptured?|"
        rf"protru\w*|extru\w*|blown)\s+(?:\w+\s+){{0,2}}?{_DISC}\b",
        rf"\b{_DISC}\s+(?:\w+\s+){{0,2}}?(?:herniat\w*|hernia|bulge|bulges|bulging|protrusion|protruding|"
        r"extrusion|rupture|ruptured|slipped|is\s+out)\b",
        r"\bhernia\s+(?:in|of|on)\s+(?:my|the|her|his|a)\s+(?:\w+\s+)?(?:disc|disk|spine|back)\b",
        r"\bherniat(?:ion|ions|ed)\b",
        r"\bhern(?:i?a|ai|e)ted\b",
        r"\bbulg(?:e|es|ing)\s+(?:\w+\s+)?(?:at|in)\s+(?:[CLT]\s?-?\d|my\s+(?:neck|back|spine|lower))",
        r"\bHNP\b",
    ],
    "condition:stenosis": [
        r"(?<!aortic\s)(?<!carotid\s)(?<!pyloric\s)(?<!valve\s)(?<!valvular\s)(?<!mitral\s)(?<!renal\s)"
        r"(?<!artery\s)(?<!arterial\s)(?<!tracheal\s)(?<!urethral\s)(?<!coronary\s)(?<!heart\s)"
        r"(?<!biliary\s)(?<!bowel\s)(?<!subglottic\s)"
        r"\b(?:st[ei]noss?[iy]s|stenoses|stenotic|stenois|stenosys)\b"
        r"(?!\s+(?:of|in)\s+(?:the\s+|my\s+|her\s+|his\s+|an?\s+)?(?:aort\w*|carotid|heart|valve|arter\w*|"
        r"kidney|renal|coronary|bowel|intestine))",
        r"\bnarrow\w*\s+(?:of\s+|in\s+)?(?:the\s+|my\s+|her\s+|his\s+)?(?:spinal\s+)?(?:canal|spine|foram\w*|"
        r"nerve\s+(?:holes|openings|passages?))\b",
        r"\b(?:spinal\s+)?canal\s+(?:is\s+)?narrow\w*",
    ],
    "condition:muscle_strain": [
        r"\bpull(?:ed)?\s+(?:a\s+|my\s+|some\s+|the\s+)?(?:\w+\s+)?muscles?\b",
        r"\bpulled\s+(?:something|my\s+(?:lower\s+|low\s+|upper\s+|mid\s+)?(?:back|neck))\b",
        r"\bstrain(?:ed)?\s+(?:a\s+|my\s+|the\s+|her\s+|his\s+)?(?:\w+\s+){0,2}?(?:muscles?|back|neck)\b",
        r"\b(?:muscle|muscular|back|lumbar|neck|cervical|thoracic)\s+(?:strain|sprain)s?\b",
        r"\bsprain(?:ed)?\s+(?:my\s+|her\s+|his\s+)?(?:\w+\s+)?(?:back|neck)\b",
        r"\btweak(?:ed)?\s+(?:something|(?:my|a)\s+(?:\w+\s+)?(?:back|neck|muscle))\b",
        r"\bover[- ]?did\s+it\b",
        r"\boveruse\w*|\bover[- ]?used\b|\boverexert\w*",
        r"\bthr(?:ew|own)\s+(?:out\s+)?(?:my|her|his)\s+(?:\w+\s+)?back(?:\s+out)?\b",
        r"\b(?:hurt|injured|wrenched)\s+(?:my|her|his)\s+(?:\w+\s+)?(?:back|neck)\s+(?:while\s+)?"
        r"(?:lifting|moving|carrying|picking|shoveling|bending|twisting|reaching|pulling|pushing)\b",
        r"\bmuscle\s+(?:tear|pull)\b",
    ],
    "history:failed_pt": [
        rf"\b{_PT}\b[^.;!?\n]{{0,70}}?\b{_PT_FAIL}",
        rf"\b{_PT_FAIL}[^.;!?\n]{{0,40}}?\b(?:from|with|after|despite|in|of)\s+(?:\w+\s+){{0,4}}?{_PT}\b",
        rf"\bfailed\s+(?:\w+\s+){{0,3}}?{_PT}\b",
    ],
    "red_flag:bowel_bladder": [
        r"\b(?:los[ts]|losing|loss\s+of|lose|no|trouble|difficulty|hard|problems?|issues?|can'?t|cannot|"
        r"can\s+not|unable\s+to|not\s+able\s+to)\b[^.;!?\n]{0,25}?\b(?:control|hold)\w*\s+(?:of\s+|over\s+)?"
        r"(?:my\s+|her\s+|his\s+|the\s+)?(?:bladder|bowels?|urine|pee|stool|poop)\b",
        r"\b(?:bladder|bowel)s?\s+(?:control\s+)?(?:incontinence|accidents?|leak\w*|problems?|issues?|trouble|loss)\b",
        r"\baccidents?\s+with\s+(?:my|her|his|the)\s+(?:bladder|bowels?)\b",
        r"\bincontinen\w*",
        r"\b(?:pee(?:d|ing)?|wet(?:ting)?|poop(?:ed|ing)?|soil(?:ed|ing)?|pissed|pissing)\s+"
        r"(?:myself|herself|himself|my\s+pants|her\s+pants|his\s+pants|the\s+bed)\b",
        r"\bleaking\s+(?:urine|stool)\b",
        r"\b(?:can'?t|cannot|can\s+not|unable\s+to|not\s+able\s+to|trouble|hard\s+to)\s+"
        r"(?:pee|urinate|empty\s+(?:my|her|his)\s+bladder|start\s+(?:peeing|urinating))\b",
        r"\burinary\s+retention\b|\bretaining\s+urine\b",
        r"\b(?:can'?t|cannot|don'?t|doesn'?t)\s+feel\s+(?:\w+\s+){0,3}?(?:when\s+(?:i|she|he)\s+(?:pee|go|wipe)|"
        r"between\s+(?:my|her|his)\s+legs|in\s+(?:my|her|his)\s+(?:groin|crotch))\b",
        r"\b(?:saddle|groin|crotch|genital|perineal)\s+(?:area\s+)?(?:numb\w*|anesthesia|tingl\w*)",
        r"\bnumb\w*\s+(?:\w+\s+)?(?:in|around|between|down)\s+(?:my|her|his|the)\s+(?:groin|crotch|genitals|"
        r"privates|butt\s+cheeks|inner\s+thighs|saddle|private\s+area)\b",
        # Numbness *between* the legs is saddle numbness; numbness *in* the legs is radiating pain.
        r"\bnumb\w*\s+(?:\w+\s+)?between\s+(?:my|her|his|the)\s+legs\b",
        r"\bnumb\s+down\s+there\b",
        r"\bcauda\s+equina\b",
    ],
    "red_flag:weakness": [
        r"\b(?:legs?|arms?|foot|feet|hands?|grip|knees?|ankles?)\s+(?:(?:is|are|feels?|feeling|getting|got|has\s+gotten|"
        r"have\s+gotten|going|went|gone|so|really|very|more|keeps?\s+getting)\s+){0,2}(?:weak|weaker|weakness)\b",
        r"\bweak(?:ness|ened)?\s+(?:in|of)\s+(?:my|her|his|both|the)?\s*(?:left\s+|right\s+)?"
        r"(?:legs?|arms?|foot|feet|hands?|ankles?|grip)\b",
        r"\bweak\s+(?:left\s+|right\s+)?(?:legs?|arms?|foot|feet|hands?|ankles?|grip)\b",
        r"\bfoot\s*drop\b|\bdrop\s*foot\b",
        r"\b(?:foot|feet|toes?|legs?)\s+(?:keeps?\s+|is\s+|are\s+|has\s+been\s+|started\s+)?"
        r"(?:drags?|dragging|slaps?|slapping)\b",
        r"\bdragg?(?:ing)?\s+(?:my|her|his)\s+(?:left\s+|right\s+)?(?:foot|leg|toes)\b",
        r"\b(?:legs?|knees?)\b[^.;!?\n]{0,30}?\b(?:giving|gave|give|gives)\s+(?:out|way)\b",
        r"\b(?:legs?|knees?)\b[^.;!?\n]{0,30}?\b(?:buckl\w*|collaps\w*)",
        r"\b(?:legs?|arms?|hands?)\s+(?:(?:is|are|feel|feels|go|goes|get|gets)\s+)?\w+\s+and\s+(?:weak|weaker)\b",
        r"\bknees?\s+(?:keeps?\s+|keep\s+)?buckl\w*",
        r"\b(?:can'?t|cannot|can\s+not|unable\s+to|not\s+able\s+to|trouble|hard\s+to)\s+"
        r"(?:lift|raise|move|pick\s+up|flex)\s+(?:my|her|his)\s+(?:left\s+|right\s+)?(?:foot|leg|toes|arm)\b",
        r"\b(?:can'?t|cannot|unable\s+to)\s+walk\s+on\s+(?:my|her|his)\s+(?:heels|toes)\b",
        r"\bdropping\s+(?:things|stuff|cups|everything|my\s+\w+)\b",
        r"\blosing\s+(?:my\s+|her\s+|his\s+)?(?:grip|strength)\b",
        r"\bnumb\w*[^.;!?\n]{0,40}?\b(?:spreading|getting\s+worse|worse\s+and\s+worse|moving\s+up|progress\w*)",
        r"\b(?:spreading|progressive|worsening)\s+numbness\b",
    ],
    "red_flag:trauma": [
        r"\bfell\b(?!\s+(?:asleep|apart|behind|in\s+love|through|short|ill|sick|out\s+of\s+love|for\b))",
        r"\b(?:a|had\s+a|took\s+a|bad|hard|my|her|his)\s+fall\b(?!\s+(?:semester|season))",
        r"\bfall(?:ing)?\s+(?:off|from|down|on|onto)\b",
        r"\b(?:slipped|tripped)\s+and\s+(?:fell|landed)\b",
        r"\b(?:car|auto|motor\s+vehicle|motorcycle|bike|bicycle|truck|traffic|vehicle|head[- ]on|rollover)\s+"
        r"(?:accident|crash|wreck|collision)\b",
        r"\b(?:motorcycle|car|truck)\s+wreck\b",
        r"\bMV[AC]\b",
        r"\brear[- ]?ended\b",
        r"\bt[- ]?boned\b",
        r"\b(?:hit|struck)\s+by\s+(?:a|an|the)\s+(?:\w+\s+)?(?:car|truck|vehicle|van|bus|driver|forklift|beam|pallet)\b",
        r"\btotal(?:l)?ed\s+(?:my|her|his|the)\s+car\b",
        r"\btackled\b",
        r"\bkicked\s+(?:in|on)\s+(?:the|my|her|his)\s+(?:back|spine|neck)\b",
        r"\b(?:got|was)\s+hit\s+(?:hard\s+)?(?:playing|during|in\s+(?:a|the)\s+(?:game|match))\b",
        r"\bcollided\b|\bcollision\b",
        r"\bthrown\s+(?:off|from)\b|\bbucked\s+off\b",
        r"\b(?:work|workplace|construction|job\s*site|industrial)\s+accident\b",
        r"\baccident\s+at\s+work\b",
        r"\blanded\s+(?:hard\s+)?on\s+(?:my|her|his)\s+(?:back|tailbone|butt|neck|head)\b",
        r"\bblunt\s+trauma\b",
    ],
    "nonspinal:organ": [
        r"\bkidney[- ]?stones?\b",
        r"\bkidney\s+(?:infections?|problems?|issues?)\b",
        r"\bpyelo\w*",
        r"\brenal\s+(?:colic|stones?|calculi)\b",
        r"\bgall[- ]?bladder\b",
        r"\bgall[- ]?stones?\b",
    ],
}

_BODY = (
    r"(?:legs?|arms?|hands?|foot|feet|hips?|buttocks?|butt(?:\s+cheek)?|glutes?|thighs?|knees?|calf|calves|"
    r"shins?|ankles?|toes?|fingers?|thumbs?|wrists?|elbows?|forearms?|shoulders?|shoulder[- ]?blades?|side|"
    r"flank|(?:lower|low|upper|mid|middle)[- ]?back|neck|ribs?|rib\s+cage|SI\s+joint|sciatic\w*|groin|pelvis|"
    r"lumbar|chest|kidney\s+area)"
)
_BACK_PAIN = r"back(?=\s+(?:pain|spasms?|hurts?|aches?|is|has|muscles?|area|side|region))"
for _side, _word in (("side:left", r"(?:left|lt)"), ("side:right", r"(?:right|rt)")):
    TARGETS[_side] = [
        rf"(?<!all\s)(?<!alright\s)\b{_word}(?:[- ]sided?|\s+side(?:\s+of)?)?\s+"
        r"(?:(?:lower|low|upper|mid|middle|side\s+of\s+my|part\s+of\s+my|inner|outer|big|little|pinky)\s+)*"
        rf"(?:{_BODY}|{_BACK_PAIN})\b",
        rf"\b{_word}[- ]sided\b",
        rf"\b(?:on|to|in)\s+(?:the|my|her|his)\s+{_word}\b(?!\s+(?:now|away|track))",
        rf"\b{_word}\s+of\s+(?:my|the|her|his)\s+spine\b",
        r"\bboth\s+sides\b",
        r"\bbilateral(?:ly)?\b",
        r"\bboth\s+(?:legs|arms|hands|feet|hips|buttocks|thighs|knees|calves|shoulders|shoulder\s+blades)\b",
        r"\b(?:left|right)\s+and\s+(?:left|right)\b",
        r"\b(?:each|either)\s+side\b",
    ]

_NUM = (
    r"(?:\d{1,3}(?:\.\d)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|a\s+couple(?:\s+of)?|couple(?:\s+of)?|a\s+few|few|several)"
)
_UNIT = r"(?:days?|wks?|weeks?|months?|mos?|mths?|yrs?|years?|decades?|hours?|hrs?)"
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?s?"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_HOLIDAY = (
    r"(?:christmas|xmas|thanksgiving|easter|new\s+year'?s?(?:\s+day|\s+eve)?|halloween|labor\s+day|"
    r"memorial\s+day|(?:the\s+)?(?:4th|fourth)\s+of\s+july|july\s+4(?:th)?)"
)
_SEASON = r"(?:summer|spring|fall|autumn|winter)"
_WEEKDAY_FULL = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
# "may" is a month only after "in", "since", "early", "late", "mid", "last", "this".
_MONTH_FULL = (
    r"(?:january|february|march|april|(?<=in\s|ce\s|ly\s|te\s|id\s|st\s|is\s|id-)may|june|july|august|"
    r"september|sept|october|november|december)"
)
_DATE_SINCE = (
    rf"(?:(?:last|this|this\s+past|past)\s+)?(?:{_WEEKDAY}|weekend)|the\s+weekend|yesterday|today|tonight|"
    rf"this\s+(?:morning|afternoon|evening)|last\s+(?:night|week|month|year|weekend)|this\s+week|"
    rf"the\s+other\s+day|{_MONTH}(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|"
    rf"(?:19|20)\d\d|{_HOLIDAY}|(?:(?:last|this|the)\s+)?{_SEASON}|"
    r"(?:i\s+was\s+(?:a\s+)?(?:teen\w*|kid|child|little|young)|high\s+school|college|my\s+(?:teens|twenties|20s|30s))"
)
# A bare date needs full names: "may", "sat", "sun" and "fall" are everyday words.
_DATE_BARE = (
    rf"(?:(?:last|this|this\s+past|past|on)\s+)?(?:{_WEEKDAY_FULL}|weekend)|the\s+weekend|yesterday|today|"
    rf"tonight|this\s+(?:morning|afternoon|evening)|last\s+(?:night|week|month|year|weekend)|this\s+week|"
    rf"the\s+other\s+day|(?:in\s+|on\s+|early\s+|late\s+|mid[- ])?{_MONTH_FULL}"
    r"(?:\s+\d{1,2}(?:st|nd|rd|th)?)?|"
    rf"\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|(?:in|back\s+in)\s+(?:19|20)\d\d|{_HOLIDAY}|(?:last|this)\s+{_SEASON}"
)
TARGETS[DURATION] = [
    rf"\b(?:x\s*)?{_NUM}\s*-?\s*\+?\s*{_UNIT}\b(?:\s+ago)?",
    rf"\bsince\s+(?:{_DATE_SINCE})\b",
    rf"\b(?:{_DATE_BARE})\b",
    r"\bchronic\b",
    r"\bfor\s+(?:years|months|ages|decades|a\s+long\s+time|a\s+long\s+while|many\s+years|so\s+long)\b",
    r"\b(?:for\s+)?(?:the\s+)?(?:past|last)\s+(?:few|several|couple(?:\s+of)?|many)\s+(?:years|months)\b",
    r"\b(?:years|decades)\s+of\b",
    r"\brecurr\w*|\bkeeps?\s+coming\s+back\b",
    r"\ball\s+my\s+life\b|\bmy\s+whole\s+(?:adult\s+)?life\b",
]


def compiled_targets() -> list[tuple[str, re.Pattern[str]]]:
    """Compile one alternation per tag, for lower-cased text.

    One scan per tag instead of one per pattern halves the time; within a tag the earlier
    alternative wins at a position, so the more specific patterns are listed first.
    """
    return [
        (tag, re.compile("|".join(f"(?:{pattern.lower()})" for pattern in patterns)))
        for tag, patterns in TARGETS.items()
        if patterns
    ]


_CLAUSE_OPENERS = {
    "my", "i", "it", "it's", "its", "the", "this", "just", "now", "but", "her", "his", "she", "he",
    "so", "then", "which", "though", "also", "and", "mostly", "only", "what", "except", "more",
    "rather", "actually", "mainly", "instead", "we", "they", "you",
}  # fmt: skip
_AND_OPENERS = {
    "i",
    "my",
    "now",
    "it",
    "then",
    "this",
    "her",
    "his",
    "she",
    "he",
    "the",
}


def same_clause(_target: Span, _modifier: Span, between: Span) -> bool:
    """Refuse a modification that would reach over a clause break (", my …", "and I …")."""
    tokens = [t.lower_ for t in between]
    for i, tok in enumerate(tokens[:-1]):
        nxt = tokens[i + 1]
        if tok == "," and nxt in _CLAUSE_OPENERS:
            return False
        if tok == "and" and nxt in _AND_OPENERS:
            return False
    return True


# Default ConText rules that misread patients' words: a resolved or past episode still
# counts (PRODUCT §3), and "return"/"come back" are about returning to work or to the clinic.
_DROPPED_DEFAULTS = {
    "resolved",
    "now resolved",
    "ruled out",
    "return",
    "come back for",
    "history",
    "h/o",
    "past history",
}

_RELATIVES = [
    "mom", "mother", "mum", "mommy", "momma", "dad", "father", "daddy", "brother", "sister", "sibling",
    "wife", "husband", "spouse", "partner", "boyfriend", "girlfriend", "fiance", "fiancé", "fiancee",
    "son", "daughter", "kid", "child", "grandma", "grandmother", "granny", "grandpa", "grandfather",
    "aunt", "uncle", "cousin", "niece", "nephew", "friend", "buddy", "coworker", "co-worker",
    "colleague", "boss", "neighbor", "neighbour", "roommate", "grandson", "granddaughter", "stepmom",
    "stepdad", "stepson", "stepdaughter", "parents", "parent", "friends", "brothers", "sisters",
]  # fmt: skip
RELATIVES = frozenset(_RELATIVES)
_VERB_NEG = [
    "help", "helped", "helping", "work", "worked", "working", "improve", "improved", "go", "stop",
    "get", "last", "budge", "ease", "sleep", "sit", "stand", "walk", "bend", "move", "drive", "turn",
    "lift", "function", "do", "stay", "focus", "breathe", "tolerate", "handle", "bear", "remember",
    "afford", "wait", "find", "see", "think", "know", "want", "matter", "care", "make", "take", "even",
    "been", "able", "seem", "play", "hold", "lay", "lie", "put", "reach", "keep", "feel",
]  # fmt: skip


def context_rules(default_rules: list[ConTextRule]) -> list[ConTextRule]:
    """Adapt medspaCy's default ConText rules to patients' messages and add the clinic's own."""
    from medspacy.context import ConTextRule

    rules: list[ConTextRule] = []
    clause_bound: Callable[[Span, Span, Span], bool] = same_clause
    for rule in default_rules:
        if rule.literal in _DROPPED_DEFAULTS:
            continue
        if rule.category in {"NEGATED_EXISTENCE", "HYPOTHETICAL"} and rule.direction != "TERMINATE":
            rule.on_modifies = clause_bound
        if rule.category == "FAMILY":
            rule.terminated_by = {"FIRST_PERSON", "TERMINATE"}
        rules.append(rule)

    def neg(literal: str, direction: str = "FORWARD", pattern: list | None = None) -> ConTextRule:
        return ConTextRule(
            literal,
            "NEGATED_EXISTENCE",
            direction=direction,
            pattern=pattern,
            on_modifies=clause_bound,
        )

    def hyp(literal: str, pattern: list | None = None) -> ConTextRule:
        return ConTextRule(
            literal,
            "HYPOTHETICAL",
            direction="FORWARD",
            pattern=pattern,
            on_modifies=clause_bound,
        )

    def pseudo(literal: str, pattern: list | None = None) -> ConTextRule:
        return ConTextRule(literal, "PSEUDO", direction="PSEUDO", pattern=pattern)

    def possible(literal: str) -> ConTextRule:
        return ConTextRule(literal, "POSSIBLE_EXISTENCE", direction="FORWARD")

    rules += [
        # Clause ends: STACK gotcha 2 (";"), and the conjunctions patients use to turn around.
        ConTextRule(";", "TERMINATE", direction="TERMINATE"),
        *(
            ConTextRule(w, "TERMINATE", direction="TERMINATE")
            for w in ("however", "though", "although", "except", "whereas", "yet")
        ),
        # Negations in patients' words.
        neg("never", pattern=[{"LOWER": "never"}]),
        neg(
            "haven't had",
            pattern=[
                {"LOWER": {"IN": ["have", "has", "had"]}},
                {"LOWER": {"IN": ["n't", "not"]}},
                {"LOWER": "had"},
            ],
        ),
        neg(
            "were ruled out",
            "BACKWARD",
            [
                {"LOWER": {"IN": ["was", "were", "is", "got", "been"]}},
                {"LOWER": "ruled"},
                {"LOWER": "out"},
            ],
        ),
        neg(
            "came back negative",
            "BACKWARD",
            [
                {"LOWER": {"IN": ["came", "come", "was", "were", "is"]}},
                {"LOWER": "back", "OP": "?"},
                {"LOWER": {"IN": ["negative", "clear", "normal"]}},
            ],
        ),
        neg("none", pattern=[{"LOWER": "none"}]),
        ConTextRule(
            "ruled out",
            "NEGATED_EXISTENCE",
            direction="BIDIRECTIONAL",
            on_modifies=clause_bound,
        ),
        neg("nothing like", pattern=[{"LOWER": "nothing"}, {"LOWER": "like"}]),
        # Suspicion counts (PRODUCT §3): these outrank a bare "if" or "not".
        *(
            possible(p)
            for p in (
                "not sure if",
                "wondering if",
                "wonder if",
                "see if",
                "check if",
                "know if",
                "find out if",
                "asking if",
                "not sure whether",
                "could it be",
                "could this be",
                "might be",
                "may be",
                "may have",
                "might have",
                "think i have",
                "afraid i have",
                "worried i have",
                "is it",
            )
        ),
        # Hypotheticals and general questions.
        *(
            hyp(p)
            for p in (
                "in case",
                "what if",
                "even if",
                "unless",
                "in the event",
                "to avoid",
                "to prevent",
                "risk of",
                "chance of",
                "do you treat",
                "do you see",
                "do you help",
                "do you do",
                "do you take",
                "patients with",
                "people with",
                "anyone with",
                "someone with",
            )
        ),
        hyp(
            "afraid I'll",
            [
                {"LOWER": {"IN": ["afraid", "scared", "worried", "terrified"]}},
                {"LOWER": {"IN": ["that", "of"]}, "OP": "?"},
                {"LOWER": {"IN": ["i", "it"]}},
                {"LOWER": {"IN": ["'ll", "will", "might", "could", "would", "'d"]}},
            ],
        ),
        hyp(
            "afraid of",
            [{"LOWER": {"IN": ["afraid", "scared", "terrified"]}}, {"LOWER": "of"}],
        ),
        hyp(
            "should I",
            [{"LOWER": {"IN": ["should", "would"]}}, {"LOWER": {"IN": ["i", "we"]}}],
        ),
        hyp(
            "when should I",
            [
                {"LOWER": "when"},
                {"LOWER": {"IN": ["should", "do", "would"]}},
                {"LOWER": {"IN": ["i", "we"]}},
            ],
        ),
        # Words that look like negation but are not ("PT didn't help", "can't sit", "no idea why").
        pseudo(
            "not verb",
            [
                # The auxiliary makes this longer than the plain "can't" negation, so it wins.
                {"LOWER": {"IN": list(_AUXILIARIES)}, "OP": "?"},
                {"LOWER": {"IN": ["not", "n't", "never"]}},
                {"LOWER": {"IN": ["really", "even", "just"]}, "OP": "?"},
                {"LOWER": {"IN": _VERB_NEG}},
            ],
        ),
        *(
            pseudo(p)
            for p in (
                "no one",
                "no idea",
                "no clue",
                "no matter",
                "not only",
                "no doubt",
                "not just",
                "no longer",
                "no way",
                "not sure why",
                "not sure what",
                "no reason",
                "no end",
                "no choice",
                "no better",
                "not better",
                "no relief",
                "no help",
                "no improvement",
                "not improving",
                "no change",
                "no progress",
            )
        ),
        pseudo(
            "can't walk far without",
            [
                {
                    "LOWER": {
                        "IN": [
                            "walk",
                            "stand",
                            "sit",
                            "sleep",
                            "bend",
                            "drive",
                            "work",
                            "move",
                            "lie",
                            "lay",
                            "get",
                            "go",
                        ]
                    }
                },
                {
                    "LOWER": {"IN": ["far", "long", "much", "up", "down", "anywhere", "more"]},
                    "OP": "?",
                },
                {"LOWER": "without"},
            ],
        ),
        pseudo(
            "without help",
            [
                {"LOWER": "without"},
                {"LOWER": {"IN": ["help", "relief", "success", "improvement", "much"]}},
            ],
        ),
    ]
    # Someone else's complaint; a first-person word ends that scope ("my brother had one, I …").
    rel_pattern = [
        {"LOWER": {"IN": ["my", "our", "his", "her", "their", "a", "the", "your"]}},
        {
            "LOWER": {
                "IN": [
                    "step",
                    "best",
                    "older",
                    "younger",
                    "elderly",
                    "late",
                    "ex",
                    "good",
                    "old",
                ]
            },
            "OP": "?",
        },
        {"LOWER": {"IN": _RELATIVES}},
    ]
    inlaw_pattern = [
        {"LOWER": {"IN": ["my", "our", "his", "her"]}},
        {"LOWER": {"IN": ["mother", "father", "brother", "sister", "son", "daughter"]}},
        {"TEXT": "-"},
        {"LOWER": "in"},
        {"TEXT": "-"},
        {"LOWER": "law"},
    ]
    terminated = {"FIRST_PERSON", "TERMINATE"}
    rules += [
        ConTextRule(
            "relative",
            "FAMILY",
            direction="FORWARD",
            pattern=rel_pattern,
            terminated_by=terminated,
        ),
        ConTextRule(
            "in-law",
            "FAMILY",
            direction="FORWARD",
            pattern=inlaw_pattern,
            terminated_by=terminated,
        ),
        ConTextRule(
            "runs in the family",
            "FAMILY",
            direction="BACKWARD",
            pattern=[
                {"LOWER": {"IN": ["runs", "run", "running"]}},
                {"LOWER": "in"},
                {"LOWER": {"IN": ["my", "the", "our"]}},
                {"LOWER": "family"},
            ],
        ),
        ConTextRule(
            "family history",
            "FAMILY",
            direction="FORWARD",
            pattern=[{"LOWER": "family"}, {"LOWER": {"IN": ["history", "hx"]}}],
        ),
        ConTextRule(
            "first person",
            "FIRST_PERSON",
            direction="PSEUDO",
            pattern=[{"LOWER": {"IN": ["i", "me", "myself", "mine", "i'm", "im", "i've", "ive"]}}],
        ),
        ConTextRule("my", "FIRST_PERSON", direction="PSEUDO"),
    ]
    return [phrase for rule in rules for phrase in _as_phrases(rule)]


_MAX_PHRASES = 400
_AUXILIARIES = (
    "do",
    "does",
    "did",
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "had",
    "ca",
    "could",
    "would",
    "wo",
    "should",
    "need",
    "must",
)


def _expand(pattern: list[dict]) -> list[list[str]] | None:
    """List every token sequence a simple LOWER/IN/optional pattern matches, or None if not simple."""
    sequences: list[list[str]] = [[]]
    for token in pattern:
        value = token.get("LOWER")
        if set(token) - {"LOWER", "OP"} or token.get("OP") not in (None, "?"):
            return None
        if isinstance(value, str):
            options = [value]
        elif isinstance(value, dict) and set(value) == {"IN"}:
            options = list(value["IN"])
        else:
            return None
        grown = [[*seq, option] for seq in sequences for option in options]
        sequences = sequences + grown if token.get("OP") == "?" else grown
    return [seq for seq in sequences if seq]


def _as_phrases(rule: ConTextRule) -> list[ConTextRule]:
    """Turn a token-pattern rule into phrase rules, for speed.

    spaCy's token Matcher ran ~70 ConText patterns at every token (3 ms per 1,000 characters);
    the same rules as phrases go through the PhraseMatcher, a hash lookup per token.
    """
    from medspacy.context import ConTextRule

    sequences = _expand(rule.pattern) if isinstance(rule.pattern, list) else None
    if sequences is None:
        return [rule]
    literals: set[str] = set()
    for seq in sequences:
        text = " ".join(seq).replace(" n't", "n't")
        if text.startswith("n't"):
            literals.update(aux + text for aux in _AUXILIARIES)
        else:
            literals.add(text)
    if len(literals) > _MAX_PHRASES:
        return [rule]  # one token pattern is cheaper than thousands of phrases in memory
    return [
        ConTextRule(
            literal,
            rule.category,
            direction=rule.direction,
            on_modifies=rule.on_modifies,
            allowed_types=rule.allowed_types,
            excluded_types=rule.excluded_types,
            max_scope=rule.max_scope,
            max_targets=rule.max_targets,
            terminated_by=rule.terminated_by,
        )
        for literal in sorted(literals)
    ]

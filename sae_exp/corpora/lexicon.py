"""Word lists of the logic-corpus grammar: topics, people, verb phrases, markers, traps.

Every label draws its content words from the same topics, so a probe cannot tell the labels
apart by topic; only the logical markers (and the traps that mimic them) differ.
Verb-phrase notation: the first word is the verb, conjugated by `make_logic_corpus`; an object
written `the {sg|pl}` can be quantified ("every sg", "most of the pl"); a third field `s` makes
the plain (definite) reading singular, otherwise it is plural.
Content words avoid quantifier words (all, every, some, no, most, many, few, each, numerals ...)
and conditional markers, so that labels stay clean; `make_logic_corpus` checks this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    people: tuple[str, ...]  # "sg/pl"
    vps: tuple[str, ...]  # verb phrases for people
    things: tuple[tuple[str, str, tuple[str, ...]], ...]  # (sg, pl, verb phrases)
    places: tuple[str, ...]
    times: tuple[str, ...]


def _t(name: str, people: str, vps: str, things: list, places: str, times: str) -> Topic:
    split = lambda s: tuple(x.strip() for x in s.split(";") if x.strip())  # noqa: E731
    return Topic(name, split(people), split(vps),
                 tuple((sg, pl, split(v)) for sg, pl, v in things), split(places), split(times))


TOPICS: tuple[Topic, ...] = (
    _t("kitchen", "chef/chefs; cook/cooks; waiter/waiters; baker/bakers; kitchen porter/kitchen "
       "porters; head chef/head chefs",
       "chop the {onion|onions}; taste the {sauce|sauces|s}; bake the {loaf|loaves}; burn the "
       "toast; wash the {pan|pans}; serve the {dessert|desserts}; season the {soup|soups|s}; "
       "clean the {oven|ovens|s}; order fresh fish from the market; peel the {potato|potatoes}; "
       "forget the salt; reheat the {pie|pies|s}; grill the {steak|steaks}; set the "
       "{table|tables}; open a new bag of flour",
       [("oven", "ovens", "overheat; stop working; be too hot"),
        ("sauce", "sauces", "thicken too quickly; taste bitter; burn on the stove"),
        ("fridge", "fridges", "break down; leak onto the floor"),
        ("cake", "cakes", "collapse in the middle; come out dry")],
       "in the kitchen; at the restaurant; behind the counter; at the bakery",
       "before dinner; during the lunch rush; on Saturday night"),
    _t("outdoors", "hiker/hikers; camper/campers; ranger/rangers; climber/climbers; "
       "walker/walkers",
       "pack the {tent|tents|s}; climb the {hill|hills|s}; cross the {river|rivers|s}; check the "
       "forecast; wear a warm coat; carry the {map|maps|s}; light the {fire|fires|s}; reach the "
       "{summit|summits|s}; follow the {trail|trails|s}; set up camp by the lake; stay in the "
       "mountain hut; lose the compass",
       [("storm", "storms", "reach the coast; knock out the power; pass quickly"),
        ("river", "rivers", "flood the fields; freeze over; burst its banks"),
        ("path", "paths", "be icy; become muddy; vanish under the snow"),
        ("bridge", "bridges", "wash away; be closed")],
       "in the mountains; on the ridge; near the lake; at the campsite",
       "at dawn; before the storm; over the weekend"),
    _t("sports", "player/players; coach/coaches; striker/strikers; goalkeeper/goalkeepers; "
       "referee/referees; runner/runners",
       "score a late goal; miss the {penalty|penalties|s}; win the {match|matches|s}; train in "
       "the rain; lose the final; join the {club|clubs|s}; watch the {replay|replays|s}; break "
       "the record; pass the ball to the wing; warm up on the pitch; sign the new contract; kick "
       "the ball over the bar",
       [("match", "matches", "go to extra time; be cancelled; end in a draw"),
        ("pitch", "pitches", "be waterlogged; be too hard"),
        ("race", "races", "start late; be postponed")],
       "at the stadium; on the pitch; in the gym; at the training ground",
       "late in the game; before kick-off; after the final whistle"),
    _t("travel", "traveller/travellers; passenger/passengers; pilot/pilots; tourist/tourists; "
       "tour guide/tour guides",
       "miss the {flight|flights|s}; book the {hotel|hotels|s}; pack the {suitcase|suitcases|s}; "
       "lose the passport; rent a car; check in online; change the {ticket|tickets|s}; board "
       "the {plane|planes|s}; visit the {castle|castles|s}; take a taxi to the airport; cancel "
       "the {trip|trips|s}; land in Lisbon; reach the border",
       [("flight", "flights", "be delayed; leave on time; land early"),
        ("bag", "bags", "go missing; be too heavy"),
        ("hotel", "hotels", "be booked up; offer a late checkout")],
       "at the airport; in the old town; at the border; at the hotel",
       "before the holidays; during the long weekend; at the start of the trip"),
    _t("school", "student/students; teacher/teachers; pupil/pupils; head teacher/head teachers; "
       "tutor/tutors",
       "finish the {essay|essays|s}; pass the {exam|exams|s}; mark the {test|tests}; forget the "
       "homework; read the {chapter|chapters|s}; join the choir; solve the {problem|problems}; "
       "present the {project|projects|s}; arrive late for class; revise for the final exam; "
       "lose the calculator; clean the whiteboard; borrow the {textbook|textbooks|s}",
       [("exam", "exams", "be too hard; start early"),
        ("lesson", "lessons", "run over time; be cancelled"),
        ("school bus", "school buses", "be late; break down")],
       "at school; in the classroom; in the playground; in the science block",
       "after the lesson; before the exam; during break"),
    _t("office", "manager/managers; intern/interns; accountant/accountants; clerk/clerks; "
       "designer/designers; colleague/colleagues",
       "send the {report|reports|s}; sign the {contract|contracts|s}; miss the "
       "{deadline|deadlines|s}; approve the budget; call the {client|clients|s}; print the "
       "{invoice|invoices}; book the meeting room; update the spreadsheet; hire a new assistant; "
       "answer the {email|emails}; lead the {meeting|meetings|s}; work from home; file the "
       "{complaint|complaints|s}",
       [("printer", "printers", "jam again; run out of toner"),
        ("meeting", "meetings", "run late; be moved to Friday"),
        ("laptop", "laptops", "crash; refuse to start")],
       "at the office; in the meeting room; at head office; at the front desk",
       "before the deadline; before the board meeting; after lunch"),
    _t("hospital", "nurse/nurses; doctor/doctors; patient/patients; surgeon/surgeons; "
       "paramedic/paramedics; pharmacist/pharmacists",
       "take the {tablet|tablets}; check the {chart|charts|s}; rest for a week; examine the "
       "{patient|patients|s}; sign the {form|forms|s}; call the ambulance; order a blood test; "
       "change the {bandage|bandages|s}; visit the ward; prescribe the "
       "{antibiotic|antibiotics}; skip the appointment; finish the night shift; treat the "
       "{wound|wounds|s}",
       [("fever", "fevers", "go down; get worse"),
        ("wound", "wounds", "heal quickly; become infected"),
        ("test", "tests", "come back negative; show an infection")],
       "at the hospital; in the ward; at the clinic; in the waiting room",
       "after the operation; during the night shift; before the surgery"),
    _t("garden", "gardener/gardeners; neighbour/neighbours; volunteer/volunteers; "
       "grandparent/grandparents",
       "water the {tomato|tomatoes}; plant the {bulb|bulbs}; mow the {lawn|lawns|s}; prune the "
       "{rose|roses}; dig a new bed; trim the {hedge|hedges|s}; pick the {apple|apples}; pull up "
       "the {weed|weeds}; feed the {bird|birds}; build a compost heap; cover the "
       "{seedling|seedlings}; sweep the {path|paths|s}",
       [("frost", "frosts", "kill the seedlings; arrive early"),
        ("tomato", "tomatoes", "ripen; split on the vine"),
        ("hedge", "hedges", "grow too tall; block the light")],
       "in the garden; at the allotment; in the greenhouse; by the shed",
       "in early spring; before the first frost; at the weekend"),
    _t("music", "singer/singers; drummer/drummers; violinist/violinists; conductor/conductors; "
       "pianist/pianists; guitarist/guitarists",
       "tune the {guitar|guitars|s}; rehearse the {song|songs}; forget the lyrics; play the "
       "encore; cancel the {concert|concerts|s}; record the {album|albums|s}; sing the "
       "{solo|solos|s}; practise the {scale|scales}; sell out the hall; miss the {cue|cues|s}; "
       "join the orchestra; write a new song",
       [("concert", "concerts", "sell out; start late"),
        ("string", "strings", "snap; go out of tune"),
        ("microphone", "microphones", "stop working; crackle")],
       "at the concert hall; on stage; in the studio; at the festival",
       "before the show; during the rehearsal; after the encore"),
    _t("software", "developer/developers; engineer/engineers; tester/testers; user/users; "
       "administrator/administrators; programmer/programmers",
       "fix the {bug|bugs}; deploy the {update|updates|s}; restart the {server|servers|s}; write "
       "the {test|tests}; merge the {branch|branches|s}; review the {change|changes}; reset the "
       "password; delete the {file|files}; back up the database; install the {patch|patches|s}; "
       "close the {ticket|tickets}; upgrade the laptop",
       [("build", "builds", "fail; pass on the first try"),
        ("server", "servers", "crash; run out of memory"),
        ("app", "apps", "freeze; crash on startup")],
       "in production; on the staging server; at the data centre",
       "before the release; during the outage; after the migration"),
    _t("finance", "banker/bankers; investor/investors; customer/customers; cashier/cashiers; "
       "trader/traders; auditor/auditors",
       "pay the {bill|bills}; sell the {share|shares}; open a savings account; repay the "
       "{loan|loans|s}; check the {statement|statements|s}; transfer the money; raise the "
       "interest rate; approve the {mortgage|mortgages|s}; buy the {bond|bonds}; close the "
       "{account|accounts|s}; lose the receipt; sign the {cheque|cheques|s}",
       [("market", "markets", "crash; recover quickly"),
        ("price", "prices", "rise; fall sharply"),
        ("share", "shares", "lose value; double in value")],
       "at the bank; on the trading floor; at the branch",
       "at the end of the month; before the audit; during the crisis"),
    _t("lab", "chemist/chemists; researcher/researchers; technician/technicians; "
       "scientist/scientists; postdoc/postdocs",
       "repeat the {experiment|experiments|s}; measure the {sample|samples}; heat the "
       "{solution|solutions|s}; label the {tube|tubes}; publish the {paper|papers|s}; calibrate "
       "the {microscope|microscopes|s}; analyse the {result|results}; clean the {flask|flasks}; "
       "order new gloves; spill the acid; record the {temperature|temperatures|s}; write up the "
       "{finding|findings}",
       [("sample", "samples", "be contaminated; change colour"),
        ("reaction", "reactions", "go too fast; produce gas"),
        ("freezer", "freezers", "fail overnight; start to beep")],
       "in the lab; at the institute; under the fume hood",
       "before the conference; during the trial run; after the funding review"),
    _t("law", "lawyer/lawyers; judge/judges; witness/witnesses; juror/jurors; "
       "defendant/defendants; solicitor/solicitors",
       "sign the {statement|statements|s}; appeal the {verdict|verdicts|s}; read the "
       "{file|files}; call the {witness|witnesses}; delay the {hearing|hearings|s}; object to "
       "the {question|questions}; settle the {dispute|disputes|s}; pay the fine; reject the "
       "{claim|claims|s}; break the contract; win the appeal",
       [("trial", "trials", "last for months; be postponed"),
        ("hearing", "hearings", "be adjourned; start late"),
        ("verdict", "verdicts", "be overturned; surprise the press")],
       "in court; at the courthouse; in the judge's chambers",
       "before the trial; during the hearing; after the verdict"),
    _t("farm", "farmer/farmers; shepherd/shepherds; farmhand/farmhands; beekeeper/beekeepers",
       "feed the {cow|cows}; shear the {sheep|sheep}; harvest the wheat; milk the {goat|goats}; "
       "fix the {fence|fences|s}; sell the {lamb|lambs}; plough the {field|fields|s}; collect "
       "the {egg|eggs}; repair the {tractor|tractors|s}; move the {herd|herds|s} to higher "
       "ground; check the {hive|hives}",
       [("cow", "cows", "get out of the field; fall ill"),
        ("crop", "crops", "fail; need rain"),
        ("hen", "hens", "stop laying; escape from the coop")],
       "on the farm; in the barn; in the lower field; at the market",
       "at harvest time; before the winter; at sunrise"),
    _t("shop", "shopkeeper/shopkeepers; shopper/shoppers; shop assistant/shop assistants; "
       "florist/florists; butcher/butchers",
       "refund the {order|orders|s}; restock the {shelf|shelves}; lower the {price|prices}; lock "
       "the {door|doors|s}; wrap the {present|presents}; cash up the till; return the "
       "{jacket|jackets|s}; try on the {dress|dresses|s}; open the shop early; check the "
       "{receipt|receipts|s}; deliver the {parcel|parcels}; complain about the queue",
       [("parcel", "parcels", "arrive damaged; go to the wrong address"),
        ("shelf", "shelves", "be empty; collapse"),
        ("delivery", "deliveries", "arrive late; get lost")],
       "at the shop; in the market; at the checkout; behind the till",
       "before closing time; during the sale; on Saturday morning"),
    _t("home", "parent/parents; child/children; sister/sisters; brother/brothers; "
       "cousin/cousins; flatmate/flatmates",
       "tidy the {bedroom|bedrooms|s}; wash the {dish|dishes}; walk the {dog|dogs|s}; paint the "
       "{wall|walls}; fix the {tap|taps|s}; visit the {cousin|cousins}; cook the {meal|meals|s}; "
       "lock the front door; forget the keys; do the laundry; call the grandparents; fold the "
       "{towel|towels}; move the {sofa|sofas|s}",
       [("roof", "roofs", "leak; need repairs"),
        ("boiler", "boilers", "break down; make a strange noise"),
        ("pipe", "pipes", "freeze; burst")],
       "at home; in the living room; at grandma's house; in the attic",
       "after school; on Sunday evening; during the holidays"),
    _t("zoo", "keeper/keepers; vet/vets; visitor/visitors; trainer/trainers; "
       "biologist/biologists",
       "feed the {penguin|penguins}; clean the {cage|cages|s}; weigh the {cub|cubs}; open the "
       "{enclosure|enclosures|s}; vaccinate the {puppy|puppies}; photograph the {tiger|tigers|s}; "
       "tag the {bird|birds}; close the reptile house; lead the {tour|tours|s}; catch the "
       "escaped parrot; treat the {elephant|elephants|s}",
       [("lion", "lions", "roar at the crowd; sleep in the shade"),
        ("penguin", "penguins", "refuse to eat; dive into the pool"),
        ("monkey", "monkeys", "escape from the enclosure; steal the keeper's hat")],
       "at the zoo; in the aquarium; at the wildlife park; near the lion enclosure",
       "at feeding time; during the school visit; before opening time"),
    _t("sea", "sailor/sailors; captain/captains; fisherman/fishermen; diver/divers; "
       "lifeguard/lifeguards",
       "raise the {sail|sails}; check the {net|nets}; haul in the {catch|catches|s}; repair the "
       "{hull|hulls|s}; anchor the {boat|boats|s}; swim to the buoy; radio the coastguard; tie "
       "the {knot|knots}; steer the {ship|ships|s} into the harbour; spot the "
       "{dolphin|dolphins}; clean the deck",
       [("boat", "boats", "capsize; drift out to sea"),
        ("tide", "tides", "turn; come in fast"),
        ("engine", "engines", "stall; overheat")],
       "at the harbour; out at sea; on the beach; at the marina",
       "at high tide; before the storm; at dusk"),
    _t("building", "builder/builders; plumber/plumbers; electrician/electricians; "
       "architect/architects; carpenter/carpenters; inspector/inspectors",
       "pour the concrete; install the {window|windows}; wire the {socket|sockets}; measure the "
       "{room|rooms|s}; lay the {brick|bricks}; inspect the {scaffold|scaffolds|s}; replace the "
       "{pipe|pipes}; sand the {floor|floors|s}; approve the {plan|plans}; order extra timber; "
       "finish the {extension|extensions|s}; seal the {roof|roofs|s}",
       [("crane", "cranes", "tip over; stop working"),
        ("beam", "beams", "crack; bend under the weight"),
        ("wall", "walls", "collapse; need extra support")],
       "on the building site; at the new school; on the top floor; in the basement",
       "before the inspection; during the heatwave; after the foundations dry"),
    _t("art", "painter/painters; curator/curators; artist/artists; sculptor/sculptors; "
       "critic/critics; photographer/photographers",
       "hang the {painting|paintings}; restore the {portrait|portraits|s}; sell the "
       "{sculpture|sculptures|s}; sketch the {statue|statues|s}; open the "
       "{exhibition|exhibitions|s}; frame the {print|prints}; review the {show|shows|s}; borrow "
       "the {vase|vases|s}; lend the {drawing|drawings} to the gallery; mix the paint; varnish "
       "the canvas",
       [("painting", "paintings", "fade in the sun; be damaged in transit"),
        ("exhibition", "exhibitions", "attract large crowds; close early"),
        ("frame", "frames", "crack; come loose")],
       "at the museum; in the gallery; in the studio; in the east wing",
       "before the opening night; during the restoration; after the auction"),
    _t("books", "librarian/librarians; reader/readers; author/authors; editor/editors; "
       "publisher/publishers",
       "return the {book|books}; renew the {loan|loans|s}; shelve the {novel|novels}; edit the "
       "{manuscript|manuscripts|s}; translate the {poem|poems}; publish the {memoir|memoirs|s}; "
       "lose the library card; catalogue the {map|maps}; read the {review|reviews}; sign the "
       "{copy|copies}; finish the {draft|drafts|s}",
       [("book", "books", "go missing; be overdue"),
        ("manuscript", "manuscripts", "arrive late; get lost in the post"),
        ("novel", "novels", "sell well; win a prize")],
       "at the library; in the reading room; at the book fair",
       "before the launch; during the book fair; after the reading"),
    _t("transport", "commuter/commuters; ticket inspector/ticket inspectors; bus driver/bus "
       "drivers; cyclist/cyclists; mechanic/mechanics",
       "catch the {bus|buses|s}; miss the {connection|connections|s}; buy the "
       "{ticket|tickets}; repair the {bike|bikes|s}; park the {van|vans|s}; check the "
       "{timetable|timetables|s}; cycle to work; change trains at York; top up the travel card; "
       "service the {engine|engines|s}; report the {delay|delays}",
       [("bus", "buses", "be full; take a diversion"),
        ("train", "trains", "be cancelled; stop outside the station"),
        ("road", "roads", "be closed; flood")],
       "at the station; on the platform; at the bus stop; on the motorway",
       "during rush hour; on the way home; before the strike"),
    _t("theatre", "actor/actors; director/directors; dancer/dancers; stagehand/stagehands; "
       "producer/producers",
       "learn the {line|lines}; rehearse the {scene|scenes}; forget the {cue|cues|s}; cast the "
       "{role|roles|s}; rewrite the {ending|endings|s}; sell the {ticket|tickets}; build the "
       "{set|sets|s}; miss the {rehearsal|rehearsals|s}; bow to the audience; direct the "
       "{play|plays|s}; fix the {costume|costumes}",
       [("curtain", "curtains", "get stuck; fall early"),
        ("play", "plays", "run for months; close early"),
        ("spotlight", "spotlights", "fail during the show; flicker")],
       "at the theatre; on set; backstage; in the rehearsal room",
       "before the premiere; during the interval; after the final performance"),
    _t("everyday", "friend/friends; neighbour/neighbours; guest/guests; roommate/roommates; "
       "classmate/classmates; stranger/strangers; person/people",
       "miss the last bus; call a taxi; get home late; go to bed early; stay at home; buy a new "
       "phone; lose the {key|keys}; tell the truth; change the plan; wait outside; take the "
       "stairs; leave the party early; invite the {neighbour|neighbours}; answer the phone; "
       "forget the {password|passwords|s}; borrow the {umbrella|umbrellas|s}; wake up early; eat "
       "out; get lost in town; be late; be hungry; feel better; win the bet; keep the secret; "
       "move house; walk home in the rain; prefer tea to coffee; own a car; speak French; like "
       "spicy food; hate the cold weather; know the answer",
       [("phone", "phones", "run out of battery; ring loudly"),
        ("party", "parties", "end early; get too loud"),
        ("door", "doors", "slam shut; stick"),
        ("cafe", "cafes", "close early; run out of milk")],
       "in town; at the party; at the cafe; at the cinema; in the park",
       "on the way home; before midnight; on Friday night"),
)

NAMES = (
    "Maria", "Tom", "Aisha", "Kenji", "Olga", "Ravi", "Chloe", "Daniel", "Fatima", "Luca",
    "Nina", "Omar", "Sofia", "Ben", "Priya", "Jonas", "Mei", "Carlos", "Hannah", "Tariq",
    "Ingrid", "Kwame", "Lena", "Marcus", "Yuki", "Ahmed", "Grace", "Pablo", "Zoe", "Elif",
    "Dr Novak", "Mrs Green", "Mr Haddad", "Uncle Joe", "Professor Lim", "Aunt Rosa",
)
PRONOUNS = ("I", "you", "we", "they", "she", "he")
PERSON_ADJ = ("new", "young", "old", "tired", "local", "senior", "friendly", "nervous",
              "experienced", "busy", "careful", "junior", "retired", "cheerful")
SG_DETS = ("the", "the", "the", "our", "my", "your", "their", "her", "his", "that")
PL_DETS = ("the", "the", "the", "our", "my", "your", "their", "these", "those")

PAST_TIMES = ("yesterday", "last week", "last night", "on Monday", "this morning",
              "earlier today", "last summer", "in March", "on Tuesday afternoon")
FUTURE_TIMES = ("tomorrow", "next week", "on Friday", "later today", "next month",
                "in the spring", "on Thursday morning", "tonight")
NEUTRAL_TIMES = ("in the morning", "at noon", "after lunch", "in the evening",
                 "around midnight")
OPENERS = ("Honestly, ", "In the end, ", "To be fair, ", "Apparently, ", "Of course, ",
           "Luckily, ", "Sadly, ", "Frankly, ", "In my view, ", "According to the report, ",
           "As expected, ", "Strangely, ")

IRREGULAR = {
    "be": ("was", "been"), "have": ("had", "had"), "do": ("did", "done"),
    "go": ("went", "gone"), "make": ("made", "made"), "take": ("took", "taken"),
    "give": ("gave", "given"), "write": ("wrote", "written"), "read": ("read", "read"),
    "eat": ("ate", "eaten"), "sing": ("sang", "sung"), "run": ("ran", "run"),
    "win": ("won", "won"), "lose": ("lost", "lost"), "buy": ("bought", "bought"),
    "catch": ("caught", "caught"), "leave": ("left", "left"), "send": ("sent", "sent"),
    "build": ("built", "built"), "lend": ("lent", "lent"), "keep": ("kept", "kept"),
    "sweep": ("swept", "swept"), "sell": ("sold", "sold"), "forget": ("forgot", "forgotten"),
    "get": ("got", "got"), "break": ("broke", "broken"), "freeze": ("froze", "frozen"),
    "steal": ("stole", "stolen"), "fall": ("fell", "fallen"), "grow": ("grew", "grown"),
    "come": ("came", "come"), "become": ("became", "become"), "hang": ("hung", "hung"),
    "dig": ("dug", "dug"), "feed": ("fed", "fed"), "lead": ("led", "led"), "set": ("set", "set"),
    "cut": ("cut", "cut"), "put": ("put", "put"), "shut": ("shut", "shut"),
    "light": ("lit", "lit"), "pay": ("paid", "paid"), "lay": ("laid", "laid"),
    "swim": ("swam", "swum"), "wear": ("wore", "worn"), "burst": ("burst", "burst"),
    "shear": ("sheared", "shorn"), "tie": ("tied", "tied"), "spill": ("spilled", "spilled"),
    "sink": ("sank", "sunk"), "drive": ("drove", "driven"), "ride": ("rode", "ridden"),
    "know": ("knew", "known"), "see": ("saw", "seen"), "rise": ("rose", "risen"),
    "bend": ("bent", "bent"), "find": ("found", "found"), "tell": ("told", "told"),
    "meet": ("met", "met"), "fly": ("flew", "flown"), "draw": ("drew", "drawn"),
    "sleep": ("slept", "slept"), "spend": ("spent", "spent"), "hold": ("held", "held"),
    "cast": ("cast", "cast"), "repay": ("repaid", "repaid"), "reset": ("reset", "reset"),
    "rewrite": ("rewrote", "rewritten"), "split": ("split", "split"), "show": ("showed", "shown"),
    "wake": ("woke", "woken"), "feel": ("felt", "felt"), "stick": ("stuck", "stuck"),
    "ring": ("rang", "rung"),
}
STATIVE = {"prefer", "own", "like", "hate", "know", "love"}  # no progressive forms
DOUBLE = {"stop", "plan", "drop", "ship", "jog", "shop", "chop", "mop", "grab", "trim", "plug",
          "scrub", "tap", "slip", "admit", "submit", "regret", "permit", "prefer", "skip", "tag",
          "dig", "swim", "run", "win", "begin", "get", "set", "cut", "put", "shut", "forget",
          "sit", "hug", "nod", "beg", "dip", "rob", "clap", "fit", "jam", "snap", "spot", "tip",
          "top", "transfer", "wrap", "cancel", "label", "travel", "refer", "occur", "slam"}

# Quantifiers: (pattern, agreement, existential_ok). {sg}/{pl} = the noun.
CANONICAL_Q = (
    ("every {sg}", "sg", False), ("each {sg}", "sg", False), ("each of the {pl}", "sg", False),
    ("all {pl}", "pl", False), ("all the {pl}", "pl", False), ("all of the {pl}", "pl", False),
    ("some {pl}", "pl", True), ("some of the {pl}", "pl", False), ("no {sg}", "sg", True),
    ("no {pl}", "pl", True), ("none of the {pl}", "pl", False), ("most {pl}", "pl", False),
    ("most of the {pl}", "pl", False), ("many {pl}", "pl", True), ("many of the {pl}", "pl", False),
    ("few {pl}", "pl", True), ("a few {pl}", "pl", True), ("a few of the {pl}", "pl", False),
    ("several {pl}", "pl", True), ("several of the {pl}", "pl", False),
    ("both {pl}", "pl", False), ("not all {pl}", "pl", False), ("not every {sg}", "sg", False),
    ("almost every {sg}", "sg", False), ("almost all of the {pl}", "pl", False),
    ("nearly every {sg}", "sg", False),
)
NO_CANONICAL_Q = (
    ("the majority of the {pl}", "pl", False), ("a majority of {pl}", "pl", False),
    ("a minority of the {pl}", "pl", False), ("a handful of {pl}", "pl", True),
    ("a handful of the {pl}", "pl", False), ("only a handful of {pl}", "pl", True),
    ("a couple of {pl}", "pl", True), ("not a single {sg}", "sg", True),
    ("not one of the {pl}", "sg", False), ("not even one {sg}", "sg", True),
    ("three out of four {pl}", "pl", False), ("nine out of ten {pl}", "pl", False),
    ("two out of three {pl}", "pl", False), ("one in five {pl}", "sg", False),
    ("half of the {pl}", "pl", False), ("half the {pl}", "pl", False),
    ("nearly half of the {pl}", "pl", False), ("more than half of the {pl}", "pl", False),
    ("less than a third of the {pl}", "pl", False), ("two thirds of the {pl}", "pl", False),
    ("a quarter of the {pl}", "pl", False), ("a third of the {pl}", "pl", False),
    ("at least three {pl}", "pl", True), ("a maximum of two {pl}", "pl", True),
    ("exactly four {pl}", "pl", True), ("only two {pl}", "pl", True),
    ("only a fraction of the {pl}", "pl", False), ("ninety percent of the {pl}", "pl", False),
    ("the vast majority of {pl}", "pl", False), ("the bulk of the {pl}", "pl", False),
    ("dozens of {pl}", "pl", True), ("hundreds of {pl}", "pl", True),
    ("a large number of {pl}", "pl", True), ("a lot of {pl}", "pl", True),
    ("lots of {pl}", "pl", True), ("plenty of {pl}", "pl", True), ("countless {pl}", "pl", True),
    ("numerous {pl}", "pl", True), ("a dozen {pl}", "pl", True), ("zero {pl}", "pl", True),
    ("barely a third of the {pl}", "pl", False), ("upwards of fifty {pl}", "pl", True),
    ("three of the {pl}", "pl", False), ("two of the {pl}", "pl", False),
    ("the whole group of {pl}", "sg", False), ("a small number of {pl}", "pl", True),
)
CANONICAL_PRON = (("everyone", "sg"), ("everybody", "sg"), ("nobody", "sg"), ("no one", "sg"),
                  ("someone", "sg"), ("somebody", "sg"))
NO_CANONICAL_PRON = (("not a single person", "sg"), ("not one person", "sg"),
                     ("only one person", "sg"), ("just two people", "pl"),
                     ("dozens of people", "pl"), ("the majority of people", "pl"),
                     ("hardly a soul", "sg"), ("half the people", "pl"),
                     ("one person in ten", "sg"), ("a handful of people", "pl"))

# Conditional helpers that are not clauses.
IF_I_WERE = ("you", "her", "him", "them", "the manager", "the coach", "your sister")
BISCUIT = ("If you need", "If you are looking for", "If you want", "In case you need")
CASE_OF = ("fire", "a power cut", "an emergency", "heavy rain", "a delay", "a strike",
           "a flood", "doubt", "a complaint", "an accident")
GIVEN_NP = ("Given more time", "Given the chance", "Given a bigger budget",
            "With extra practice", "With a bit of luck", "With better weather",
            "Given the right tools", "With a little help")
WITHOUT_NP = ("your help", "the new funding", "a proper plan", "the extra staff", "that warning",
              "a good map", "the spare key", "the backup generator", "the grant")

# Control traps.
IF_TITLES = ("Kipling's poem If", "the novel If Beale Street Could Talk",
             "the song If I Were a Boy", "the song Only If", "the Calvino novel "
             "If on a Winter's Night a Traveller", "the novel Unless by Carol Shields",
             "the song As Long as You Love Me", "the song Should I Stay or Should I Go",
             "the film What If", "the song If You Leave")
QUANT_TITLES = ("Some Like It Hot", "All About Eve", "No Country for Old Men",
                "Much Ado About Nothing", "Everything Everywhere All at Once",
                "All Quiet on the Western Front", "Everybody Loves Raymond",
                "Every Breath You Take", "Many Rivers to Cross", "Nobody Knows",
                "Somewhere Over the Rainbow", "Each Dawn I Die", "Several Species of Small "
                "Furry Animals", "Few Are Chosen")
QUANT_PLACES = ("Somerset", "Everton", "Anyang", "Mostar", "Fewston", "Manyberries",
                "Allendale", "Somerville", "Allentown", "Everglades City", "Ifield",
                "Nunney", "Eachwick", "Alloa")
QUANT_ORGS = ("the Everyman Theatre", "the All Blacks", "All Saints Church", "Everton",
              "Somerville College", "the Everyman Cinema", "Allstate", "the Somerset Levels",
              "the All England Club")
QUANT_NAMES = ("Everett", "Allison", "Noel", "Ally", "Nobuko", "Somers", "Noah", "Monique")
TRAP_ADJ_NOUN = ("everyday shoes", "everyday clothes", "everyday routine", "everyday tasks",
                 "allergy tablets", "overall budget")
LONG_THINGS = ("the queue", "the bridge", "the new table", "the meeting", "the film",
               "the speech", "the tunnel", "the corridor", "the runway", "the sofa",
               "the train", "the garden path")
CONDITION_STATES = ("good", "poor", "excellent", "terrible", "perfect", "fair")
MEDICAL = ("a rare skin condition", "a heart condition", "a mild lung condition",
           "a chronic condition")
CASES = ("the pencil case", "the camera case", "the suitcase", "the violin case",
         "the glasses case", "the phone case")
ROLES = ("captain", "chair", "team leader", "treasurer", "director", "host")
HAD_NP = ("a long day", "a cold", "a busy morning", "a quiet lunch", "a flat tyre",
          "a great time", "a terrible headache", "a meeting with the bank")
GIVEN_THINGS = ("a medal", "a warning", "the keys", "a promotion", "a new laptop",
                "a standing ovation", "a parking ticket", "a week off")
WITHOUT_PLAIN = ("a coat", "the map", "an umbrella", "a word", "a fuss", "the receipt",
                 "breakfast", "permission", "a ticket")
CLOCK = ("at five o'clock", "at half past seven", "on page twelve", "in room 204",
         "in 1998", "at quarter past nine", "on platform 4", "at 6:30", "in the 1980s")
QUANT_HOMONYM = ("the majority leader", "a single parent", "an only child",
                 "the one-way street", "half-time", "the half-brother", "the single ticket",
                 "the first half")

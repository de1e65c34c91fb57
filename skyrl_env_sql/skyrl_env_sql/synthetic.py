"""Small synthetic SQLite databases with questions and gold SQL (tests and the CPU example).

``build_database(path, db_id, seed)`` writes one database of a random domain (a shop:
customers, products, orders; or a school: students, courses, enrollments) with a few dozen
rows, and ``make_questions(path, rng, n)`` draws questions about *that* database from
templates, each with its gold query. Every gold query is executed on the database before
it is kept, so the answer exists and is unambiguous: values are drawn from the data,
``ORDER BY`` keys are unique, and results are non-empty.

Same seed, same bytes: the databases are written deterministically (no timestamps), so
tests can hash them.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import attrs

FIRST_NAMES = (
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Gustav",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Yara",
    "Zoe",
)
CITIES = ("Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Pune", "Quito")
CATEGORIES = {
    "toys": ("kite", "yo-yo", "puzzle", "robot", "marble set"),
    "books": ("atlas", "novel", "cookbook", "comic", "dictionary"),
    "garden": ("rake", "hose", "shovel", "planter", "sprinkler"),
    "kitchen": ("kettle", "pan", "whisk", "teapot", "grater"),
}
DEPARTMENTS = {
    "math": ("Algebra", "Calculus", "Geometry", "Statistics"),
    "history": ("Ancient Rome", "World Wars", "Silk Road", "Empires"),
    "physics": ("Mechanics", "Optics", "Waves", "Relativity"),
}
MAJORS = ("math", "history", "physics", "biology")


@attrs.frozen
class Question:
    """One generated task: the question text and the gold SQL that answers it."""

    question: str
    sql: str


# -- databases -------------------------------------------------------------------------------

SHOP_SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, age INTEGER NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL
);
"""

SCHOOL_SCHEMA = """
CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT NOT NULL, major TEXT NOT NULL, year INTEGER NOT NULL);
CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT NOT NULL, department TEXT NOT NULL, credits INTEGER NOT NULL);
CREATE TABLE enrollments (
    student_id INTEGER NOT NULL REFERENCES students(id),
    course_id INTEGER NOT NULL REFERENCES courses(id),
    grade INTEGER NOT NULL
);
"""


def _fill_shop(conn: sqlite3.Connection, rng: random.Random) -> None:
    names = rng.sample(FIRST_NAMES, rng.randint(8, 14))
    customers = [(i + 1, n, rng.choice(CITIES), rng.randint(18, 70)) for i, n in enumerate(names)]
    products = []
    prices = rng.sample(range(150, 9000), 12)  # distinct prices: ORDER BY price has no ties
    for i, price in enumerate(prices):
        category = rng.choice(sorted(CATEGORIES))
        products.append((i + 1, f"{rng.choice(CATEGORIES[category])} {i + 1}", category, price / 100))
    buyers = [c[0] for c in customers[: len(customers) - 2]]  # the last two never order
    orders = [(i + 1, rng.choice(buyers), rng.randint(1, len(products)), rng.randint(1, 5)) for i in range(25)]
    conn.executescript(SHOP_SCHEMA)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)


def _fill_school(conn: sqlite3.Connection, rng: random.Random) -> None:
    names = rng.sample(FIRST_NAMES, rng.randint(8, 14))
    students = [(i + 1, n, rng.choice(MAJORS), rng.randint(1, 4)) for i, n in enumerate(names)]
    courses = []
    for dept in sorted(DEPARTMENTS):
        for title in rng.sample(DEPARTMENTS[dept], 3):
            courses.append((len(courses) + 1, title, dept, rng.choice((2, 3, 4, 5))))
    pairs = rng.sample([(s[0], c[0]) for s in students[:-2] for c in courses], 30)
    enrollments = [(s, c, rng.randint(40, 100)) for s, c in pairs]
    conn.executescript(SCHOOL_SCHEMA)
    conn.executemany("INSERT INTO students VALUES (?, ?, ?, ?)", students)
    conn.executemany("INSERT INTO courses VALUES (?, ?, ?, ?)", courses)
    conn.executemany("INSERT INTO enrollments VALUES (?, ?, ?)", enrollments)


DOMAINS: dict[str, Callable[[sqlite3.Connection, random.Random], None]] = {"shop": _fill_shop, "school": _fill_school}


def build_database(path: str | Path, seed: int, domain: str | None = None) -> str:
    """Write a new database file at ``path`` (replacing any) and return its domain name."""
    rng = random.Random(seed)
    domain = domain or rng.choice(sorted(DOMAINS))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        DOMAINS[domain](conn, rng)
        conn.commit()
    finally:
        conn.close()
    partial.replace(path)
    return domain


# -- questions -------------------------------------------------------------------------------


@attrs.frozen
class Template:
    """A question form: ``{v}`` in both texts is filled with a value drawn by the ``values`` query."""

    question: str
    sql: str
    values: str | None = None

    def draw(self, conn: sqlite3.Connection, rng: random.Random) -> Question:
        if self.values is None:
            return Question(self.question, self.sql)
        v = rng.choice([r[0] for r in conn.execute(self.values)])
        return Question(self.question.format(v=v), self.sql.format(v=v))


TEMPLATES: dict[str, tuple[Template, ...]] = {
    "shop": (
        Template(
            "How many customers live in {v}?",
            "SELECT COUNT(*) FROM customers WHERE city = '{v}'",
            "SELECT DISTINCT city FROM customers",
        ),
        Template(
            "List the names of customers older than {v}.",
            "SELECT name FROM customers WHERE age > {v}",
            "SELECT age - 1 FROM customers",
        ),
        Template(
            "What is the average price of products in the {v} category?",
            "SELECT AVG(price) FROM products WHERE category = '{v}'",
            "SELECT DISTINCT category FROM products",
        ),
        Template(
            "What is the name of the most expensive product?",
            "SELECT name FROM products ORDER BY price DESC LIMIT 1",
        ),
        Template(
            "List all product names from the cheapest to the most expensive.",
            "SELECT name FROM products ORDER BY price ASC",
        ),
        Template(
            "How many orders has {v} placed?",
            "SELECT COUNT(*) FROM orders JOIN customers ON orders.customer_id = customers.id "
            "WHERE customers.name = '{v}'",
            "SELECT name FROM customers",
        ),
        Template(
            "What is the total quantity ordered in each product category?",
            "SELECT products.category, SUM(orders.quantity) FROM orders JOIN products "
            "ON orders.product_id = products.id GROUP BY products.category",
        ),
        Template(
            "Which customers have never placed an order?",
            "SELECT name FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)",
        ),
        Template(
            "How many products cost less than {v}?",
            "SELECT COUNT(*) FROM products WHERE price < {v}",
            "SELECT CAST(price AS INTEGER) + 1 FROM products",
        ),
        Template("How many customers live in each city?", "SELECT city, COUNT(*) FROM customers GROUP BY city"),
    ),
    "school": (
        Template(
            "How many students major in {v}?",
            "SELECT COUNT(*) FROM students WHERE major = '{v}'",
            "SELECT DISTINCT major FROM students",
        ),
        Template(
            "List the titles of the courses offered by the {v} department.",
            "SELECT title FROM courses WHERE department = '{v}'",
            "SELECT DISTINCT department FROM courses",
        ),
        Template(
            "What is the average grade of {v}?",
            "SELECT AVG(enrollments.grade) FROM enrollments JOIN students ON enrollments.student_id = students.id "
            "WHERE students.name = '{v}'",
            "SELECT DISTINCT students.name FROM students JOIN enrollments ON student_id = students.id",
        ),
        Template(
            "How many students are enrolled in each course? Give the course title and the count.",
            "SELECT courses.title, COUNT(*) FROM enrollments JOIN courses ON enrollments.course_id = courses.id "
            "GROUP BY courses.id",
        ),
        Template(
            "Which students are not enrolled in any course?",
            "SELECT name FROM students WHERE id NOT IN (SELECT student_id FROM enrollments)",
        ),
        Template(
            "List the names of students in year {v}.",
            "SELECT name FROM students WHERE year = {v}",
            "SELECT DISTINCT year FROM students",
        ),
        Template("What is the highest grade recorded?", "SELECT MAX(grade) FROM enrollments"),
        Template("List every student name in alphabetical order.", "SELECT name FROM students ORDER BY name"),
        Template(
            "How many courses are worth more than {v} credits?",
            "SELECT COUNT(*) FROM courses WHERE credits > {v}",
            "SELECT credits - 1 FROM courses",
        ),
    ),
}


def domain_of(conn: sqlite3.Connection) -> str:
    """The domain of a generated database, from its tables."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return "shop" if "customers" in tables else "school"


def make_questions(path: str | Path, rng: random.Random, n: int) -> list[Question]:
    """``n`` distinct questions about the database at ``path`` (fewer if the templates run out)."""
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        templates = TEMPLATES[domain_of(conn)]
        out: list[Question] = []
        seen: set[str] = set()
        for _ in range(n * 20):
            if len(out) >= n:
                break
            q = rng.choice(templates).draw(conn, rng)
            if q.sql in seen or not conn.execute(q.sql).fetchall():
                continue
            seen.add(q.sql)
            out.append(q)
        return out
    finally:
        conn.close()
